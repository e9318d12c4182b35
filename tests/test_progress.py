"""cnnbook.progress: the one-line progress report, in a terminal and in a Jupyter kernel."""

from types import SimpleNamespace

import IPython
import pytest

from cnnbook.progress import Progress, format_seconds, in_jupyter


@pytest.mark.parametrize(
    "seconds, text", [(0, "0:00"), (9.6, "0:10"), (75.3, "1:15"), (3599.4, "59:59"), (3725, "1:02:05")]
)
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_in_jupyter_only_inside_a_kernel(monkeypatch, fake_jupyter):
    assert in_jupyter() is True  # the fake kernel's shell
    terminal_ipython = SimpleNamespace(config={"TerminalIPythonApp": {}})
    monkeypatch.setattr(IPython, "get_ipython", lambda: terminal_ipython)
    assert in_jupyter() is False
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)  # plain Python, as under pytest
    assert in_jupyter() is False


def test_progress_line_in_a_terminal(capsys):
    progress = Progress(num_epochs=2, batches_per_epoch=10, interval=0.0)
    progress.batch_done(epoch=1, batch=4)  # the 15th of 20 batches
    progress.close("2/2 epochs in 1.0 s")
    out, err = capsys.readouterr()
    assert "\repoch 2/2 · batch 5/10 · 75% · elapsed 0:00 · ETA 0:00" in err
    assert err.endswith("\r" + "2/2 epochs in 1.0 s".ljust(100) + "\n")
    assert out == "", "the progress line stays out of the printed results"


def test_progress_redraws_at_most_once_per_interval(capsys):
    progress = Progress(num_epochs=1, batches_per_epoch=100, interval=3600.0)
    for batch in range(100):
        progress.batch_done(epoch=0, batch=batch)
    err = capsys.readouterr().err
    assert err.count("\r") == 1 and "batch 1/100 · 1%" in err  # the first batch only


def test_progress_in_jupyter_updates_one_display_in_place(fake_jupyter, capsys):
    progress = Progress(num_epochs=2, batches_per_epoch=10, interval=0.0)
    progress.batch_done(epoch=0, batch=0)
    progress.close("2/2 epochs in 1.0 s")
    assert len(fake_jupyter.displays) == 1
    assert fake_jupyter.displays[0].shown == [
        {"text/plain": "starting..."},
        {"text/plain": "epoch 1/2 · batch 1/10 · 5% · elapsed 0:00 · ETA 0:00"},
        {"text/plain": "2/2 epochs in 1.0 s"},
    ]
    assert capsys.readouterr() == ("", ""), "nothing goes to the cell's stdout or stderr"
