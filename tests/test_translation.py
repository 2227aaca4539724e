"""The translation app end to end on a tiny generated language pair (see conftest.py)."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from seqapps.apps import runs, translation
from seqapps.apps.export import run_savedmodel_in_subprocess
from seqapps.apps.translation import data, decoding, text
from seqapps.apps.translation.model import build_model

SHARED_PAIRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "spa-eng.zip"
TINY_TRAINING = [
    "--units",
    "24",
    "--embedding-dim",
    "24",
    "--epochs",
    "12",
    "--batch-size",
    "32",
    "--learning-rate",
    "0.01",
    "--dropout",
    "0",
    "--patience",
    "12",
    "--verbose",
    "0",
    # The toy's words, and the names that it uses at least a few times: rarer names are [UNK].
    "--source-vocab-size",
    "15",
    "--target-vocab-size",
    "16",
]
AWKWARD = ["", "   ", "xylophone quux blorft", "uno " * 300, "uno 😀 世界 привет", "Uno, DOS... ¿tres?"]


def pairs_with_names(count, number_words, seed=1):
    """Number pairs with a name or "yo"/"I" at a random place: Tom and Mary often,
    each of many rare names once or twice, so that they are outside the vocabulary."""
    rng = np.random.default_rng(seed)
    numbers = list(number_words.items())
    rare = [
        "".join(rng.choice(list("bdfgklmnprstvz"), 1)).upper() + "".join(rng.choice(list("aeiou"), 4)) + "x"
        for _ in range(count // 3)
    ]
    pairs = []
    for _ in range(count):
        words = [numbers[i] for i in rng.integers(0, len(numbers), rng.integers(2, 5))]
        name = rng.choice(["Tom", "Mary", "yo", "rare"], p=[0.25, 0.25, 0.2, 0.3])
        name = ("yo", "I") if name == "yo" else (name, name) if name != "rare" else (rng.choice(rare),) * 2
        words.insert(rng.integers(0, len(words) + 1), name)
        spanish, english = (" ".join(w[k] for w in words) for k in (0, 1))
        pairs.append((english[0].upper() + english[1:] + ".", spanish[0].upper() + spanish[1:] + "."))
    return pairs


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, toy_pairs, write_pairs, number_words):
    root = tmp_path_factory.mktemp("pairs")
    write_pairs(root / "spa-eng.zip", toy_pairs(1500) + pairs_with_names(600, number_words))
    return root


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "toy"
    translation.main(["train", "--data-dir", str(data_dir), "--run-dir", str(run_dir), *TINY_TRAINING])
    return run_dir


@pytest.fixture(scope="module")
def model(run_dir):
    return runs.load_model(run_dir)


def test_load_pairs_from_zip_and_text_counts_malformed_lines(tmp_path, toy_pairs, write_pairs):
    pairs = toy_pairs(5)
    bad = ["no tab here", "\tvacío", "empty other side\t", ""]
    write_pairs(tmp_path / "spa-eng.zip", pairs, bad)
    (tmp_path / "text").mkdir()
    write_pairs(tmp_path / "text" / "spa.txt", pairs, bad)
    for source in (tmp_path, tmp_path / "spa-eng.zip", tmp_path / "text"):
        english, spanish, malformed = data.load_pairs(source, "spa")
        assert list(zip(english, spanish, strict=True)) == pairs
        assert malformed == [6, 7, 8]  # the blank line is not counted


def test_missing_pairs_name_the_expected_files(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        translation.main(["train", "--data-dir", str(tmp_path), "--run-dir", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "no spa-eng sentence pairs" in error and "spa-eng.zip" in error


def test_direction_needs_english_on_one_side(data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        translation.main(
            [
                "train",
                "--data-dir",
                str(data_dir),
                "--source",
                "spa",
                "--target",
                "fra",
                "--run-dir",
                str(tmp_path / "run"),
            ]
        )
    assert "one side must be eng" in capsys.readouterr().err


def test_split_keeps_every_sentence_in_one_split():
    # "A" has two translations, and "x" translates two sentences: all four pairs stick together.
    sources = np.array(["A", "A", "B", "C"] + [f"s{i}" for i in range(200)], dtype=object)
    targets = np.array(["x", "y", "x", "z"] + [f"t{i}" for i in range(200)], dtype=object)
    splits = data.split_pairs(sources, targets, 0.2, 0.2, seed=3)
    assert sorted(np.concatenate(splits)) == list(range(len(sources)))
    home = [next(k for k, idx in enumerate(splits) if i in idx) for i in range(3)]
    assert home[0] == home[1] == home[2]
    assert all(35 <= len(idx) <= 45 for idx in splits[1:])
    again = data.split_pairs(sources, targets, 0.2, 0.2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(splits, again, strict=True))


@pytest.mark.skipif(not SHARED_PAIRS.exists(), reason=f"the real spa-eng.zip is not at {SHARED_PAIRS}")
def test_real_pairs_split_leaks_no_sentence():
    english, spanish, malformed = data.load_pairs(SHARED_PAIRS.parent, "spa")
    assert len(english) == 115_059 and not malformed
    train, validation, test = data.split_pairs(spanish, english, 0.1, 0.1, seed=1337)
    for side in (spanish, english):
        seen = set(side[train])
        assert not seen & set(side[test]) and not seen & set(side[validation])
    assert 0.09 < len(test) / len(english) < 0.11


def test_normalize_composes_accents_and_splits_punctuation():
    texts = tf.constant(["¿Dónde está Me\u0301xico?", "¿Dónde está México?", "I’m   “fine”…", b"bad \xff byte"])
    normalized = [t.decode() for t in text.normalize_text(texts).numpy()]
    assert normalized[0].split() == normalized[1].split() == ["¿", "dónde", "está", "méxico", "?"]
    assert normalized[2].split() == ["i'm", '"', "fine", '"', ".", ".", "."]
    assert normalized[3].split() == ["bad", "\ufffd", "byte"]
    cased = text.normalize_text(tf.constant(["Dónde"]), lowercase=False).numpy()[0].decode()
    assert cased.split() == ["Dónde"]


def test_detokenize_writes_punctuation_quotes_contractions_and_numbers():
    tokens = {
        "¿ dónde está ?  bien , gracias .": "¿dónde está? bien, gracias.",
        "¡ hola ! i don't know . it's mine , i'm sure .": "¡hola! i don't know. it's mine, i'm sure.",
        '" look , " she said .': '"look," she said.',
        'he shouted , " get out ! " and left .': 'he shouted, "get out!" and left.',
        "twenty - one people came at 3 : 30 ; it cost $ 1 , 000 ( 5 % ) ...": (
            "twenty-one people came at 3:30; it cost $1,000 (5%)..."
        ),
    }
    written = text.detokenize_text(tf.constant(list(tokens))).numpy()
    assert [w.decode() for w in written] == list(tokens.values())
    # Normalising written text and writing it back gives it again.
    again = text.detokenize_text(text.normalize_text(tf.constant(list(tokens.values())), lowercase=False))
    assert [w.decode() for w in again.numpy()] == list(tokens.values())


def test_casing_is_learned_where_case_is_not_sentence_initial():
    sentences = ["Tom saw Mary in Boston .", "I think I know .", 'The TV is on , " Tom " said .', '" Yes , " I said .']
    assert text.learn_casing(sentences) == {"boston": "Boston", "i": "I", "mary": "Mary", "tom": "Tom", "tv": "TV"}
    words = tf.constant([['"', "yes", ",", '"', "i", "said", ".", "¿", "qué", "?"], [""] * 10])
    initial = text.sentence_initial(words).numpy()
    assert list(np.flatnonzero(initial[0])) == [1, 8] and not initial[1].any()
    capitalized = text.capitalize(tf.constant(["élan", "", "x", "Tom"])).numpy()
    assert [w.decode() for w in capitalized] == ["Élan", "", "X", "Tom"]


@pytest.mark.slow
def test_trains_translates_and_attends_to_the_aligned_word(model):
    sentences = ["Tres uno cinco.", "Ocho dos.", "Siete seis cuatro dos uno."]
    translations, source_words, target_words, attention = model.translate(
        tf.constant(sentences), beam_size=1, return_attention=True
    )
    assert [t.decode() for t in translations.numpy()] == ["Three one five.", "Eight two.", "Seven six four two one."]
    # Each number word is produced while attending most to its own source word.
    weights = attention.numpy()
    for i, sentence in enumerate(sentences):
        n = len(sentence.split())
        assert list(np.argmax(weights[i, :n], axis=1)) == list(range(n))
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)  # every step, every sentence


# Names seen capitalised in training, "I", and names never seen (copied from the source).
CASED = {
    "Tom uno dos.": "Tom one two.",
    "uno mary tres.": "One Mary three.",
    "Dos yo.": "Two I.",
    "Zorbaxx cinco seis.": "Zorbaxx five six.",
    "Siete Quilmes dos.": "Seven Quilmes two.",
}


@pytest.mark.slow
def test_translations_are_cased_and_copy_unknown_names(model):
    assert "Zorbaxx" not in model.source_vocabulary and "zorbaxx" not in model.source_vocabulary
    for size in (1, 4):
        translations = model.translate(tf.constant(list(CASED)), beam_size=size).numpy()
        assert [t.decode() for t in translations] == list(CASED.values())
    # What evaluate reports: the words the model did not know, each replaced by a source word.
    unknown, copied = model.unknown_words(*model.decode(tf.constant(list(CASED))))
    assert list(unknown.numpy()[3:]) == [1, 1] and list(copied.numpy()[3:]) == [1, 1]  # Zorbaxx, Quilmes


@pytest.mark.slow
def test_beam_one_equals_greedy_and_beam_finds_the_translation(model):
    texts = tf.constant(["Uno dos tres.", "Cinco.", "Seis siete ocho uno dos.", "xylophone", ""])
    source_ids = model.source_ids(texts)
    greedy_ids, greedy_attention = decoding.greedy_search(model, source_ids, 12)
    beam_ids, beam_attention = decoding.beam_search(model, source_ids, 12, beam_size=1, length_penalty=0.6)
    steps = greedy_ids.shape[1]
    np.testing.assert_array_equal(greedy_ids.numpy(), beam_ids.numpy()[:, :steps])
    assert not beam_ids.numpy()[:, steps:].any()
    np.testing.assert_allclose(greedy_attention.numpy(), beam_attention.numpy()[:, :steps], atol=1e-6)
    beam4 = [t.decode() for t in model.translate(texts[:3], beam_size=4).numpy()]
    assert beam4 == ["One two three.", "Five.", "Six seven eight one two."]


@pytest.mark.slow
def test_evaluate_writes_bleu_chrf_and_sample_translations(run_dir, data_dir):
    metrics = translation.main(["evaluate", "--run-dir", str(run_dir), "--data-dir", str(data_dir)])
    assert metrics == json.loads((run_dir / "metrics.json").read_text())
    assert metrics["sentences"] > 100
    for name in ("greedy", "beam4"):
        assert metrics[name]["bleu"] > 90 and metrics[name]["chrf"] > 90
        assert metrics[name]["unknown_words"] >= metrics[name]["unknown_words_copied"] >= 0
    lines = (run_dir / "translations.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["source", "references", "greedy", "beam4"]
    assert len(lines) == metrics["sentences"] + 1


@pytest.mark.slow
def test_predict_with_attention_plot_and_awkward_inputs(run_dir, tmp_path, capsys):
    plot = tmp_path / "attention.png"
    translations = translation.main(["predict", "--model", str(run_dir), "--attention-plot", str(plot), "Dos tres."])
    assert translations == ["Two three."] and plot.stat().st_size > 1000
    translations = translation.main(["predict", "--model", str(run_dir), *AWKWARD])
    assert len(translations) == len(AWKWARD) and all(isinstance(t, str) for t in translations)
    assert "input 4 has 300 words; only the first 49 are translated" in capsys.readouterr().err


@pytest.mark.slow
def test_export_runs_alone_and_matches_keras(run_dir, model, tmp_path, capsys):
    export_dir = tmp_path / "saved_models" / "translation"
    path = translation.main(["export", "--run-dir", str(run_dir), "--export-dir", str(export_dir)])
    assert path == export_dir / "1"
    texts = ["Cuatro cinco seis.", *CASED, *AWKWARD, b"bad \xff\xfe utf-8"]
    encoded = [t if isinstance(t, bytes) else t.encode() for t in texts]
    served = run_savedmodel_in_subprocess(path, {"text": np.array(encoded, dtype="S")})["translation"]
    expected = model.translate(tf.constant(encoded), beam_size=4).numpy()
    assert list(served) == list(expected) and served[0] == b"Four five six."
    assert [t.decode() for t in served[1 : 1 + len(CASED)]] == list(CASED.values())
    assert translation.main(["predict", "--model", str(path), "Ocho uno."]) == ["Eight one."]
    with pytest.raises(SystemExit):
        translation.main(["predict", "--model", str(path), "--attention-plot", str(tmp_path / "a.png"), "Uno."])
    assert "needs a .keras model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        translation.main(["export", "--run-dir", str(run_dir), "--export-dir", str(export_dir), "--version", "1"])
    assert "never overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("cell,attention", [("peephole", "dot"), ("cifg", "general"), ("gru", "additive")])
def test_every_cell_and_attention_builds_saves_and_decodes(cell, attention, tmp_path, number_words):
    config = {
        **translation.DEFAULTS,
        "cell": cell,
        "attention": attention,
        "units": 8,
        "embedding_dim": 8,
        "seed": 0,
        "bidirectional": cell != "cifg",
        "layers": 2,
        "max_length": 6,
    }
    vocabularies = list(number_words) + ["[END]"], list(number_words.values()) + ["[START]", "[END]"]
    model = build_model(config, data.Pairs(None, None, *vocabularies, {"uno": "Uno"}))
    texts = tf.constant(["uno dos", "", "tres " * 20])
    logits = model((model.source_ids(texts), model.target_ids(texts)[:, :-1]))
    assert logits.shape[-1] == len(number_words) + 4
    runs.save_model(model, tmp_path / "model.keras")
    loaded = runs.load_model(tmp_path / "model.keras")
    for size in (1, 3):
        expected = model.translate(texts, beam_size=size).numpy()
        assert list(loaded.translate(texts, beam_size=size).numpy()) == list(expected)


@pytest.mark.slow
def test_resume_restores_the_optimizer_and_finishes(data_dir, tmp_path, interrupt_training):
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        translation.main(
            [
                "train",
                "--data-dir",
                str(data_dir),
                "--run-dir",
                str(run_dir),
                "--limit",
                "200",
                *TINY_TRAINING,
                "--epochs",
                "2",
            ]
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "Skipping variable loading for optimizer"
        checkpoint = runs.load_model(run_dir / "last.keras")
    steps_per_epoch = int(checkpoint.optimizer.iterations)
    assert steps_per_epoch >= 200 // 32

    interrupt_training()  # lets training run again
    translation.main(["train", "--resume", "--run-dir", str(run_dir), "--verbose", "0"])
    state = json.loads((run_dir / "state.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]["loss"]) == 2
    assert int(runs.load_model(run_dir / "last.keras").optimizer.iterations) == 2 * steps_per_epoch


def test_validation_loss_and_accuracy_are_per_word_over_the_epoch():
    """A batch of one long sentence and a batch of three one-word sentences: every word
    counts once, wherever it stands; Keras' own loss weighs each batch by its sentences."""
    from seqapps.apps.translation.model import TokenAccuracy, TokenCrossEntropy, masked_loss

    rng = np.random.default_rng(0)
    batches = [np.array([[3, 4, 5, 6, 7, 2]]), np.array([[3, 0], [4, 0], [2, 0]])]
    logits = [rng.normal(size=(*y.shape, 9)).astype("float32") for y in batches]
    loss, accuracy = TokenCrossEntropy(), TokenAccuracy()
    per_word_losses, hits = [], []
    for y, z in zip(batches, logits, strict=True):
        loss.update_state(y, z)
        accuracy.update_state(y, z)
        p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        real = y != 0
        per_word_losses += list(-np.log(np.take_along_axis(p, y[..., None], -1)[..., 0])[real])
        hits += list((z.argmax(-1) == y)[real])
    assert len(per_word_losses) == 9
    assert float(loss.result()) == pytest.approx(np.mean(per_word_losses), rel=1e-5)
    assert float(accuracy.result()) == pytest.approx(np.mean(hits))
    by_sentences = np.average([float(masked_loss(y, z)) for y, z in zip(batches, logits, strict=True)], weights=[1, 3])
    assert abs(by_sentences - np.mean(per_word_losses)) > 1e-3  # what Keras' "loss" reports
