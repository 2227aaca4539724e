"""The applications (`sentiment`, `translation`, `forecasting`), one package each, and
what they share: the app contract and training flow (`app`), the command line
(`cli`), run directories (`runs`), SavedModel exports (`export`), plots and tables."""

import importlib

APPS = ("sentiment", "translation", "forecasting")


def get_app(name):
    """The `seqapps.apps.app.App` of the app called `name`."""
    return importlib.import_module(f"seqapps.apps.{name}").APP
