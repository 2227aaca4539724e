"""`seqapps <app> <command> ...` and `seqapps tune <app> ...`: one entry point for all apps."""

import importlib.metadata
import sys

from seqapps.apps import APPS, get_app

USAGE = f"""usage: seqapps <app> {{train,evaluate,predict,export}} [options]
       seqapps tune <app> [options]
       seqapps serve EXPORT_DIR [options]
       seqapps --version

apps: {", ".join(APPS)}
`seqapps <app> --help` lists an app's commands and options."""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    if argv[0] in ("-V", "--version"):
        print(f"seqapps {importlib.metadata.version('seqapps')}")
        return
    app, *rest = argv
    if app == "tune":
        from seqapps.tuning.__main__ import main as tune  # KerasTuner loads only for `tune`

        tune(rest)
        return  # the console script exits with main()'s return value: None is success
    if app == "serve":
        try:
            from seqapps.apps.serving import main as serve
        except ModuleNotFoundError as error:
            sys.exit(f"seqapps serve: error: {error.name} is missing: pip install 'seqapps[serve]'")
        serve(rest)
        return
    if app not in APPS:
        sys.exit(f"seqapps: error: unknown app {app!r}; choose from: {', '.join(APPS)}")
    get_app(app).main(rest)


if __name__ == "__main__":
    main()
