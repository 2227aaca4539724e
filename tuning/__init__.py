"""KerasTuner search over the apps' models: one `AppHyperModel` built from each app's
contract (`tuning.hypermodel`), and the `tune` command (`seqapps tune <app>`, or
`python -m seqapps.tuning <app>`)."""

from seqapps.tuning.hypermodel import AppHyperModel, FailOnNaN

__all__ = ["AppHyperModel", "FailOnNaN"]
