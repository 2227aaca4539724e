"""`seqapps translation evaluate | predict | export`."""

import sys
import time
from pathlib import Path

import keras
import numpy as np
import sacrebleu
import tensorflow as tf

from seqapps.apps import runs
from seqapps.apps.cli import UsageError, as_bytes, read_inputs
from seqapps.apps.export import export_savedmodel, is_savedmodel, load_serving_signature
from seqapps.apps.plots import plot_attention
from seqapps.apps.translation import model as _registers  # noqa: F401  the model and metrics saved models name
from seqapps.apps.translation.data import split_data
from seqapps.apps.translation.text import normalize_text


def translate_all(translate, texts, batch_size=64, label="sentence"):
    """`translate` (texts -> translations and per-sentence counts) over `texts` in
    batches, with a progress bar; (translations, seconds, the counts summed)."""
    translate = tf.function(translate, input_signature=[tf.TensorSpec([None], tf.string)], reduce_retracing=True)
    progress = keras.utils.Progbar(len(texts), unit_name=label)
    results, sums, started = [], None, time.perf_counter()
    for i in range(0, len(texts), batch_size):
        batch = texts[i : i + batch_size]
        translations, *counts = translate(tf.constant(batch))
        results.extend(t.decode("utf-8") for t in translations.numpy())
        counts = [int(tf.reduce_sum(c)) for c in counts]
        sums = counts if sums is None else [a + b for a, b in zip(sums, counts, strict=True)]
        progress.add(len(batch))
    return results, time.perf_counter() - started, sums


def references_by_source(sources, targets):
    """Unique source sentences, in order, and every translation of each."""
    refs = {}
    for source, target in zip(sources, targets, strict=True):
        refs.setdefault(source, []).append(target)
    return list(refs), list(refs.values())


def score(hypotheses, references):
    """sacreBLEU's corpus BLEU with its defaults (cased, 13a tokenisation), the same
    case-insensitive, and chrF, against all references of each sentence."""
    streams = [[r[i] if i < len(r) else None for r in references] for i in range(max(map(len, references)))]
    return {
        "bleu": sacrebleu.BLEU().corpus_score(hypotheses, streams).score,
        "bleu_uncased": sacrebleu.BLEU(lowercase=True).corpus_score(hypotheses, streams).score,
        "chrf": sacrebleu.CHRF().corpus_score(hypotheses, streams).score,
    }


def evaluate(args):
    model, out_dir = runs.load_model_to_evaluate(args.run_dir or args.model)
    config = {**model.config, "data_dir": args.data_dir or model.config.get("data_dir"), "limit": args.limit}
    sources, targets = split_data(config, ("test",))["test"]
    sources, references = references_by_source(sources, targets)
    beam_size = args.beam_size or config["beam_size"]
    metrics = {
        "sentences": len(sources),
        "references": int(sum(map(len, references))),
        "lowercase": config["lowercase"],
        "beam_size": beam_size,
    }

    def translate_and_count(texts, beam_size):
        ids, attention, source_words = model.decode(texts, beam_size)
        translations = model.joined(model.written_words(ids, attention, source_words))
        return (translations, *model.unknown_words(ids, attention, source_words))

    outputs = {}
    for name, size in (("greedy", 1), (f"beam{beam_size}", beam_size)):
        print(f"Translating {len(sources):,} test sentences, {name}:")
        outputs[name], seconds, (unknown, copied) = translate_all(
            lambda t, size=size: translate_and_count(t, size), sources
        )
        metrics[name] = {
            **score(outputs[name], references),
            # Words out of the target vocabulary: each replaced by the source word it
            # attended to (copied), or left out where that was the end of the source.
            "unknown_words": unknown,
            "unknown_words_copied": copied,
            "sentences_per_second": len(sources) / seconds,
        }
        print(
            f"{name}: BLEU {metrics[name]['bleu']:.2f} (case-insensitive {metrics[name]['bleu_uncased']:.2f}), "
            f"chrF {metrics[name]['chrf']:.2f}, {unknown} unknown words ({copied} copied from the source), "
            f"{metrics[name]['sentences_per_second']:.1f} sentences/s"
        )
    runs.save_json(out_dir / "metrics.json", metrics)
    lines = ["\t".join(["source", "references", *outputs])]
    lines += [
        "\t".join([s, " | ".join(r), *(outputs[n][i] for n in outputs)])
        for i, (s, r) in enumerate(zip(sources, references, strict=True))
    ]
    runs.atomic_write(out_dir / "translations.tsv", lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    print(f"Wrote {out_dir / 'metrics.json'} and {out_dir / 'translations.tsv'}")
    return metrics


def warn_if_truncated(texts, max_length, lowercase):
    lengths = tf.strings.split(normalize_text(tf.constant(as_bytes(texts)), lowercase)).row_lengths().numpy()
    for i in np.flatnonzero(lengths > max_length - 1):
        print(
            f"warning: input {i + 1} has {lengths[i]} words; only the first {max_length - 1} are translated",
            file=sys.stderr,
        )


def predict(args):
    texts = read_inputs(args)
    model_path = Path(args.model)
    if is_savedmodel(model_path):
        if args.attention_plot:
            raise UsageError(
                "--attention-plot needs a .keras model or run directory; a SavedModel returns translations only"
            )
        info = runs.load_json(model_path / "seqapps.json")
        warn_if_truncated(texts, info["max_length"], info["lowercase"])
        translations = load_serving_signature(model_path)(text=tf.constant(as_bytes(texts)))["translation"]
        translations = [t.decode("utf-8") for t in translations.numpy()]
    else:
        model = runs.load_model(model_path)
        warn_if_truncated(texts, model.config["max_length"], model.config["lowercase"])
        beam_size = args.beam_size or model.config["beam_size"]
        translations, source_words, target_words, attention = model.translate(
            tf.constant(as_bytes(texts)), beam_size=beam_size, return_attention=True
        )
        translations = [t.decode("utf-8") for t in translations.numpy()]
        if args.attention_plot:
            for i, path in enumerate(attention_plot_paths(args.attention_plot, len(texts))):
                sources = [w.decode("utf-8") for w in source_words[i].numpy() if w]
                targets = [w.decode("utf-8") for w in target_words[i].numpy() if w]
                plot_attention(attention[i].numpy()[: len(targets), : len(sources)], sources, targets, path)
                print(f"Wrote {path}", file=sys.stderr)
    for translation in translations:
        print(translation)
    return translations


def attention_plot_paths(path, count):
    """`path` for one sentence; path-1.png, path-2.png, ... for several."""
    path = Path(path)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i}{path.suffix or '.png'}") for i in range(1, count + 1)]


# Inputs the export is checked on: ordinary sentences and the awkward ones.
EXPORT_CHECK_TEXTS = [
    "¿Dónde está la estación de tren?",
    "Tengo hambre.",
    "",
    "   ",
    "xylophonequux blorft",
    "palabra " * 300,
    "Hola 😀 世界 привет",
    "Me\u0301xico",
    b"invalid utf-8 \xff\xfe bytes",
]


def export(args):
    run_dir = Path(args.run_dir)
    model = runs.load_model(run_dir)
    beam_size = args.beam_size or model.config["beam_size"]
    info = {key: model.config[key] for key in ("source", "target", "max_length", "lowercase")}
    info["beam_size"] = beam_size

    def serve(text):
        return {"translation": model.translate(text, beam_size=beam_size)}

    texts = np.array(as_bytes(EXPORT_CHECK_TEXTS), dtype="S")
    expected = model.translate(tf.constant(texts), beam_size=beam_size).numpy()
    path = export_savedmodel(
        model,
        serve,
        examples={"text": texts},
        expected={"translation": expected},
        export_dir=args.export_dir,
        version=args.version,
        files={"seqapps.json": info},
    )
    print(f"Exported {path} (beam size {beam_size}; checked in a TensorFlow-only process on {len(texts)} inputs)")
    return path
