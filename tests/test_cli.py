"""The command line every app shares: options from each app's table, their checks,
and paths stored so that a run works from any directory."""

import pytest

from seqapps.apps import APPS, cli, get_app


@pytest.mark.parametrize("name", APPS)
def test_every_option_of_the_table_is_on_the_command_line(name):
    app = get_app(name)
    args = cli.build_parser(app).parse_args(["train"])
    for option in app.options:
        assert getattr(args, option.name) is None  # left out: the run takes the default
    assert {"cell", "units", "epochs", "batch_size"} <= {option.name for option in app.options}


def test_relative_paths_are_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = cli.build_parser(get_app("sentiment")).parse_args(["train", "--data-dir", "data"])
    assert args.data_dir == str(tmp_path / "data")
    args = cli.build_parser(get_app("forecasting")).parse_args(["train", "--dataset", "my.csv"])
    assert args.dataset == str(tmp_path / "my.csv")
    args = cli.build_parser(get_app("forecasting")).parse_args(["train", "--dataset", "etth1"])
    assert args.dataset == "etth1"  # a known dataset stays a name


@pytest.mark.parametrize("option", ["--units", "--epochs", "--limit", "--batch-size"])
def test_positive_integers_are_checked_with_one_line(option, capsys):
    with pytest.raises(SystemExit) as exit_:
        get_app("sentiment").main(["train", option, "0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert f"argument {option}: must be a positive integer, got 0" in err[-1]


def test_forecasting_reads_forward_only_and_has_no_bidirectional_option(capsys):
    with pytest.raises(SystemExit):
        get_app("forecasting").main(["train", "--bidirectional"])
    assert "unrecognized arguments: --bidirectional" in capsys.readouterr().err
    assert "bidirectional" in get_app("sentiment").defaults


@pytest.mark.parametrize("value", ["0", "1.5", "half"])
def test_fractions_are_checked_with_one_line(value, capsys):
    with pytest.raises(SystemExit):
        get_app("translation").main(["train", "--validation-fraction", value])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --validation-fraction:" in err and ("between 0 and 1" in err or "expected a fraction" in err)


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--learning-rate", "0", "must be a positive number, got 0.0"),
        ("--dropout", "1", "must be in [0, 1), got 1.0"),
        ("--recurrent-dropout", "-0.1", "must be in [0, 1), got -0.1"),
    ],
)
def test_rates_are_checked_with_one_line(option, value, message, capsys):
    with pytest.raises(SystemExit):
        get_app("forecasting").main(["train", option, value])
    assert f"argument {option}: {message}" in capsys.readouterr().err.strip().splitlines()[-1]


def test_version(capsys):
    import importlib.metadata

    from seqapps.apps.__main__ import main

    main(["--version"])
    assert capsys.readouterr().out.strip() == f"seqapps {importlib.metadata.version('seqapps')}"


@pytest.mark.parametrize("name", APPS)
def test_help_answers_without_loading_tensorflow(name):
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from seqapps.apps.__main__ import main\n"
        "try:\n"
        f"    main([{name!r}, 'train', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'tensorflow_datasets') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "--epochs" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert done.stderr == ""  # no TensorFlow start-up lines


def test_the_option_tables_name_what_the_code_knows():
    from seqapps.apps import app, forecasting, translation
    from seqapps.apps.forecasting import model as forecasting_model
    from seqapps.layers import ATTENTIONS, CELLS

    assert app.CELL_NAMES == tuple(CELLS)
    assert translation.ATTENTION_NAMES == tuple(ATTENTIONS)
    assert forecasting.LOSSES == tuple(forecasting_model.LOSSES)
    assert forecasting.DISTRIBUTIONS == tuple(forecasting_model.DISTRIBUTIONS)
