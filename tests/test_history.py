"""cnnbook.history: what a training run measured, epoch by epoch, and how it prints and saves."""

import json

import pytest
import torch

from cnnbook import History


def one_epoch_history() -> History:
    history = History(device="cpu", device_name="AMD EPYC (2 cores, 2 torch threads)", profile="quick")
    history.record(0.4771, 0.8204, 0.7951, 12.5, 8004.2)
    history.wall_time = 12.34
    return history


def test_record_numbers_the_epochs_from_1_and_stores_plain_floats():
    history = History()
    history.record(torch.tensor(0.9), 0.5, 0.55, 2, 1000)
    history.record(0.7, torch.tensor(0.6), 0.65, 2.5, 1200.0)
    assert history.epochs == [1, 2]
    assert history.train_loss == [pytest.approx(0.9), 0.7]
    assert history.train_acc == [0.5, pytest.approx(0.6)]
    assert history.test_acc == [0.55, 0.65]
    assert history.epoch_time == [2.0, 2.5] and history.examples_per_sec == [1000.0, 1200.0]
    values = [*history.train_loss, *history.train_acc, *history.epoch_time, *history.examples_per_sec]
    assert all(type(v) is float for v in values), "tensors and ints become plain floats"


def test_summary_reads_like_d2l_then_says_where_it_ran():
    assert one_epoch_history().summary() == (
        "loss 0.477, train acc 0.820, test acc 0.795, 8004.2 examples/sec on cpu\n"
        "profile quick · 1 epochs · AMD EPYC (2 cores, 2 torch threads) · wall time 12.3 s"
    )


def test_summary_of_an_interrupted_and_of_an_empty_run():
    history = one_epoch_history()
    history.interrupted = True
    assert history.summary().endswith("wall time 12.3 s · INTERRUPTED")
    assert (
        History(device_name="CPU", profile="full").summary() == "no epoch finished (profile full, device CPU)"
    )


def test_summary_reports_the_last_epoch():
    history = one_epoch_history()
    history.record(0.3012, 0.8888, 0.8512, 12.0, 8000.0)
    assert history.summary().startswith("loss 0.301, train acc 0.889, test acc 0.851, ")
    assert " · 2 epochs · " in history.summary()


def test_epoch_line():
    assert (
        one_epoch_history().epoch_line(0) == "epoch 1: loss 0.477, train acc 0.820, test acc 0.795 (12.5 s)"
    )


def test_epoch_line_of_a_later_epoch_and_counting_from_the_end():
    history = one_epoch_history()
    history.record(0.3012, 0.8888, 0.8512, 9.96, 8000.0)
    assert history.epoch_line(1) == history.epoch_line(-1)
    assert history.epoch_line(-1) == "epoch 2: loss 0.301, train acc 0.889, test acc 0.851 (10.0 s)"


def test_mean_examples_per_sec_is_total_examples_over_total_time():
    history = History()
    history.record(1.0, 0.5, 0.5, 1.0, 1000.0)
    history.record(1.0, 0.5, 0.5, 1.0, 3000.0)
    # Equal epochs: 2 epochs' examples in 1/1000 + 1/3000 of the time per example.
    assert history.mean_examples_per_sec == pytest.approx(1500.0)
    assert "1500.0 examples/sec" in history.summary()
    assert History().mean_examples_per_sec == 0.0


def test_to_dict_holds_plain_values_and_round_trips():
    history = one_epoch_history()
    history.record(0.3012, 0.8888, 0.8512, 12.0, 8000.0)
    history.interrupted = True
    data = history.to_dict()
    assert data["epochs"] == [1, 2] and data["device"] == "cpu" and data["interrupted"] is True
    assert json.loads(json.dumps(data)) == data  # only plain lists, numbers, strings and booleans
    assert History.from_dict(data) == history
    assert History.from_dict(data).summary() == history.summary()


def test_to_dict_round_trips_through_torch_load_with_weights_only(tmp_path):
    history = one_epoch_history()
    torch.save({"history": history.to_dict()}, tmp_path / "run.pt")
    loaded = torch.load(tmp_path / "run.pt", weights_only=True)  # refuses anything but plain data
    assert History.from_dict(loaded["history"]) == history


def test_history_continues_numbering_after_a_loaded_history():
    history = History()
    history.record(0.7, 0.6, 0.55, 1.0, 100.0)
    history.record(0.5, 0.7, 0.65, 1.0, 100.0)
    restored = History.from_dict(history.to_dict())
    restored.record(0.4, 0.8, 0.7, 1.0, 100.0)
    assert restored.epochs == [1, 2, 3]
    assert history.epochs == [1, 2], "the loaded copy shares no lists with the original"


def test_from_dict_refuses_unknown_fields():
    with pytest.raises(TypeError, match="accuracy"):
        History.from_dict({**History().to_dict(), "accuracy": [0.9]})


def test_scores_are_one_epochs_loss_and_accuracies():
    assert one_epoch_history().scores() == "loss 0.477, train acc 0.820, test acc 0.795"


def test_the_first_epochs_of_a_history_are_what_a_shorter_run_recorded():
    history = one_epoch_history()
    history.record(0.35, 0.87, 0.84, 12.0, 8100.0)
    first = history.first(1)
    assert first.epochs == [1] and first.test_acc == history.test_acc[:1]
    assert (first.device, first.profile, first.wall_time) == (
        history.device,
        history.profile,
        history.wall_time,
    )
    assert history.first(5) == history and len(history.epochs) == 2, "the history itself is unchanged"
