"""hf_posenc's helpers on a model whose classes come from its checkpoint's remote code: loaded with
`trust_remote_code=True` in a fresh process before hf_posenc is imported, so none of its modules are hf_posenc's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import hf_posenc
from hf_posenc import PositionEncodingError
from tests.cases import CASES, VOCAB, WINDOW, sharpen

SCALING = {"rope_type": "linear", "factor": 2.0}

HELPERS = """
import json, sys
import torch, transformers
folder, auto_class, out, scaling = sys.argv[1:]
scaling = json.loads(scaling)
model = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=True).eval()
assert "hf_posenc" not in sys.modules and "transformers_modules" in type(model).__module__
import hf_posenc
from typer.testing import CliRunner
from hf_posenc.cli import app
from hf_posenc.hub import save_converted

found = hf_posenc.position_encodings(model)
result = {"found": {name: type(module).__module__ for name, module in found.items()}}
result["declared"] = hf_posenc.declare_max_length(model, 3 * model.config.trained_context_length)
if model.config.position_encoding == "rope":
    hf_posenc.set_rope_scaling(model, scaling)
    result["scaling"] = model.config.position_encoding_options["scaling"]
    rescaled = hf_posenc.position_encodings(model).values()
    result["rescaled"] = [(type(module).__module__, module.config_options["scaling"]) for module in rescaled]
else:
    try:
        hf_posenc.set_rope_scaling(model, scaling)
    except hf_posenc.PositionEncodingError as error:
        result["refused"] = str(error)
with torch.no_grad():
    torch.save(model(torch.load(folder + "/ids.pt")).logits, out + ".logits.pt")
saved = save_converted(model, out)
info = CliRunner().invoke(app, ["info", str(saved), "--json"])
result["info"] = json.loads(info.stdout) if info.exit_code == 0 else info.output
print(json.dumps(result))
"""


def run_helpers(model, auto_class: str, tmp_path) -> tuple[dict, torch.Tensor]:
    """Save `model`, run HELPERS on it in a fresh process; return its report and the logits it computed."""
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    ids = torch.randint(0, VOCAB, (1, 2 * WINDOW), generator=torch.Generator().manual_seed(0))
    torch.save(ids, folder / "ids.pt")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}  # no sharing with parallel runs
    args = [str(folder), auto_class, str(tmp_path / "saved"), json.dumps(SCALING)]
    command = [sys.executable, "-c", textwrap.dedent(HELPERS), *args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), torch.load(tmp_path / "saved.logits.pt")


@pytest.mark.parametrize(("family", "encoding"), [("gpt2", "rope"), ("bart", "rope"), ("gpt2", "alibi")])
def test_helpers_find_remote_code_encodings(family, encoding, tmp_path):
    case = next(case for case in CASES if case.name == family)
    model = sharpen(hf_posenc.convert(case.build(), encoding), case)
    report, remote_logits = run_helpers(model, case.auto_class, tmp_path)

    stacks = sorted(hf_posenc.position_encodings(model))
    assert sorted(report["found"]) == stacks
    assert all(module.startswith("transformers_modules") for module in report["found"].values())
    assert report["declared"] == 3 * WINDOW
    assert report["info"]["position_encoding"] == encoding
    assert report["info"]["declared_max_length"] == 3 * WINDOW
    if encoding == "rope":
        assert report["scaling"] == SCALING
        assert [module.startswith("transformers_modules") for module, _ in report["rescaled"]] == [True] * len(stacks)
        assert [scaling for _, scaling in report["rescaled"]] == [SCALING] * len(stacks)
        hf_posenc.set_rope_scaling(model, SCALING)  # the same rescaling, on hf_posenc's own classes
    else:
        assert "rope" in report["refused"]
    ids = torch.load(tmp_path / "model" / "ids.pt")
    with torch.no_grad():
        torch.testing.assert_close(remote_logits, model(ids).logits)


def test_set_rope_scaling_without_encodings_is_a_clear_error():
    case = next(case for case in CASES if case.name == "gpt2")
    model = hf_posenc.convert(case.build(), "rope")
    del model.transformer.position_encoding
    with pytest.raises(PositionEncodingError, match="no position encoding"):
        hf_posenc.set_rope_scaling(model, SCALING)
