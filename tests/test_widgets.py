"""Exercise sliders (`cnnbook.widgets`, `cnnbook.explorers`) without a browser: the stored
structure that makes them work on the static site, precomputing, live runs in a thread with
progress and Cancel, and the two experiments the chapters use."""

import base64
import io
import re
import threading
import time

import ipywidgets as widgets
import pytest
import torch
from PIL import Image
from torch import nn

import cnnbook
from cnnbook.explorers import ConvExplorer, TrainingExplorer, edge_and_blur_kernels
from cnnbook.plot import figure_metadata
from cnnbook.widgets import NOT_COMPUTED, Explorer, figure_html


def product(progress, a, b):
    progress(1.0, "multiplied")
    return f"<p>{a} x {b} = {a * b}</p>"


def links_of(explorer):
    """(slider, stack) pairs joined by a jslink: (widget, trait name) at each end."""
    return [(link.source[0], link.target[0]) for link in explorer.links if link.source[1] == "index"]


def test_every_setting_has_a_result_widget_chosen_by_linked_stacks():
    explorer = Explorer(product, {"a": [1, 2, 3], "b": [10, 20]})
    assert len(explorer.results) == 6 and set(explorer.results) == {
        (i, j) for i in range(3) for j in range(2)
    }
    top = explorer.results_view
    assert isinstance(top, widgets.Stack) and len(top.children) == 3
    assert all(isinstance(child, widgets.Stack) and len(child.children) == 2 for child in top.children)
    assert top.children[2].children[1] is explorer.results[(2, 1)]
    links = links_of(explorer)  # one link per stack: the browser switches results, no kernel needed
    assert sum(slider is explorer.sliders[0] for slider, _ in links) == 1
    assert sum(slider is explorer.sliders[1] for slider, _ in links) == 3
    assert all(isinstance(stack, widgets.Stack) for _, stack in links)


def test_precompute_fills_every_result_and_start_positions_the_sliders():
    explorer = Explorer(product, {"a": [1, 2, 3], "b": [10, 20]}, start={"a": 2})
    assert explorer.results[(0, 0)].value == NOT_COMPUTED
    explorer.precompute()
    assert explorer.results[(2, 1)].value == "<p>3 x 20 = 60</p>"
    assert explorer.index() == (1, 0) and explorer.settings() == {"a": 2, "b": 10}
    assert explorer.results_view.selected_index == 1
    assert "6 results computed" in explorer.status.value


def test_bad_sliders_are_refused_with_a_hint():
    with pytest.raises(ValueError, match="at least one slider"):
        Explorer(product, {})
    with pytest.raises(ValueError, match="'b' offers no values"):
        Explorer(product, {"a": [1], "b": []})


def wait_for(condition, seconds=20.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_run_computes_the_chosen_settings_in_a_thread_and_cancel_stops_it():
    started, steps = threading.Event(), []

    def slow(progress, n):
        started.set()
        for i in range(1000):
            progress(i / 1000, f"step {i}")
            steps.append(i)
            time.sleep(0.01)
        return "finished"

    explorer = Explorer(slow, {"n": [1, 2]})
    thread = explorer.run()
    assert started.wait(10)
    wait_for(lambda: explorer.progress.value > 0)  # the bar moves while the thread works
    assert explorer.cancel_button.disabled is False and explorer.run_button.disabled is True
    explorer.cancel()
    thread.join(10)
    assert not thread.is_alive() and len(steps) < 1000
    assert explorer.status.value.startswith("Cancelled") and explorer.results[(0,)].value == NOT_COMPUTED
    assert explorer.run_button.disabled is False


def test_the_status_line_names_the_settings_run_would_compute():
    explorer = Explorer(product, {"a": [1, 2], "b": [5, 6]})
    explorer.show_result((0, 0), "<p>stored</p>")
    explorer.status.value = "before"
    explorer.sliders[1].index = 1  # (0, 1) has no result: the line says so, naming it
    assert explorer.status.value == "a 1, b 6: not computed yet; press Run."
    explorer.status.value = "before"
    explorer.sliders[1].index = 0  # (0, 0) has one: the line keeps what it said
    assert explorer.status.value == "before"
    quiet = Explorer(product, {"a": [1, 2]}, live=False)  # no Run button: nothing to announce
    quiet.sliders[0].index = 1
    assert quiet.status.value == ""


def test_a_live_run_draws_its_result_in_place_and_a_failure_is_shown():
    explorer = Explorer(product, {"a": [1, 2], "b": [5]})
    explorer.sliders[0].index = 1
    explorer.run().join(10)
    assert explorer.results[(1, 0)].value == "<p>2 x 5 = 10</p>" and "computed live" in explorer.status.value

    def broken(progress, x):
        raise ZeroDivisionError("x / 0")

    failing = Explorer(broken, {"x": [0]})
    failing.run().join(10)
    assert isinstance(failing.last_error, ZeroDivisionError)
    assert "Failed" in failing.status.value and "ZeroDivisionError: x / 0" in failing.status.value


def test_run_on_change_waits_for_the_slider_to_rest():
    calls = []
    explorer = Explorer(lambda progress, a: calls.append(a) or str(a), {"a": [1, 2, 3]},
                        run_on_change=True, debounce=0.2)  # fmt: skip
    explorer.sliders[0].index = 1
    explorer.sliders[0].index = 2  # moved on before the debounce ran out: one run only
    wait_for(lambda: calls)
    time.sleep(0.4)
    assert calls == [3]


def test_figures_become_small_inline_pngs():
    fig = cnnbook.plot_history(cnnbook.History(epochs=[1, 2], train_loss=[2.0, 1.0], train_acc=[0.3, 0.6],
                                               test_acc=[0.3, 0.5]))  # fmt: skip
    html = figure_html(fig)
    assert html.startswith('<img src="data:image/png;base64,') and len(html) < 40_000
    png = base64.b64decode(re.search(r"base64,([^\"]+)", html).group(1))
    assert Image.open(io.BytesIO(png)).size == (1000, 640)  # twice the 500 CSS pixels it is shown at
    assert 'style="width:500px;max-width:100%"' in html
    assert figure_metadata(png)["cnnbook:css-width"] == "500"  # kept through the 64-colour copy


# -- the chapters' experiments ---------------------------------------------------------------


def test_conv_explorer_agrees_with_the_formula_and_pytorch():
    image = torch.rand(28, 28)
    explorer = ConvExplorer(image)
    explorer.precompute()
    assert len(explorer.computed) == 4 * 3 * 4
    for (k, s, p), result in [((5, 1, 2), 28), ((5, 1, 0), 24), ((3, 2, 1), 14), ((7, 3, 3), 10)]:
        index = tuple(
            explorer.options[name].index(v) for name, v in zip(explorer.options, (k, s, p), strict=True)
        )
        html = explorer.results[index].value
        assert f"<b>{result}</b>" in html and f"(3, {result}, {result})" in html, html[:300]
        assert len(re.findall("<img ", html)) == 4
    assert explorer.settings() == {"kernel_size": 3, "stride": 1, "padding": 1}


def test_edge_kernels_see_edges_and_a_1x1_kernel_cannot():
    step = torch.zeros(1, 1, 9, 9)
    step[..., 5:] = 1.0  # a vertical edge
    maps = torch.nn.functional.conv2d(step, edge_and_blur_kernels(3))
    assert maps[0, 0].abs().max() > 0 and maps[0, 1].abs().max() == 0
    assert torch.all(edge_and_blur_kernels(1)[:2] == 0)
    with pytest.raises(ValueError, match="one grayscale image"):
        ConvExplorer(torch.rand(3, 28, 28))


@pytest.fixture
def tiny_loaders():
    torch.manual_seed(0)
    labels = torch.arange(200) % 2
    images = (labels.view(-1, 1, 1, 1) * 200 + torch.randint(0, 50, (200, 1, 8, 8))).to(torch.uint8)
    return cnnbook.DeviceLoader(images, labels, 20, shuffle=True), cnnbook.DeviceLoader(images, labels, 100)


def tiny_net(width=4):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 2))


def test_training_explorer_trains_each_setting_once_and_shows_every_epoch(tiny_loaders, capsys):
    explorer = TrainingExplorer(tiny_net, *tiny_loaders, lr=[0.1, 1e12], epochs=3, width=[2, 8], device="cpu")
    assert list(explorer.options) == ["width", "lr", "epochs"]
    assert explorer.targets() == [(0, 0, 2), (0, 1, 2), (1, 0, 2), (1, 1, 2)]
    explorer.show()  # the full profile (the tests' default): every setting trained
    assert len(explorer.computed) == 2 * 2 * 3
    learned = explorer.results[(1, 0, 2)].value
    assert "after 3 epochs" in learned and re.search(r"test acc 1\.000", learned), learned[-200:]
    assert "NaN or infinite in epoch" in explorer.results[(1, 1, 2)].value, "lr 1e12 must diverge"
    assert "results computed" in capsys.readouterr().out


def test_training_explorer_under_quick_trains_only_when_asked(tiny_loaders, capsys):
    cnnbook.use_profile("quick")
    explorer = TrainingExplorer(tiny_net, *tiny_loaders, lr=0.5, epochs=[2, 8], device="cpu")
    explorer.show()
    assert not explorer.computed and "press Run" in capsys.readouterr().out
    assert explorer.settings()["epochs"] == 8, "it opens on the largest number of epochs"
    explorer.run().join(30)
    assert explorer.last_error is None, explorer.last_error
    assert "quick profile: trained 5 of 8 epochs" in explorer.results[(1,)].value
    assert "after 2 epochs" in explorer.results[(0,)].value, "the shorter count comes from the same run"
    assert "seed 1" in explorer.results[(1,)].value, "each live run takes the next seed"


def test_training_explorer_wants_device_loaders():
    with pytest.raises(TypeError, match="DeviceLoaders"):
        TrainingExplorer(tiny_net, [(torch.zeros(1, 64), torch.zeros(1))], None, lr=0.1, epochs=1)


def test_training_explorer_keeps_the_nets_own_init_when_asked(tiny_loaders):
    """init=None trains the weights the net was built with (e.g. Kaiming); the default re-initialises."""
    built = []

    def recorded_net():
        torch.manual_seed(0)
        net = tiny_net()
        built.append((net, net[1].weight.detach().clone()))
        return net

    explorer = TrainingExplorer(recorded_net, *tiny_loaders, lr=0.0, epochs=1, device="cpu", init=None)
    explorer.run().join(30)
    assert explorer.last_error is None, explorer.last_error
    net, weights_at_build = built[-1]
    assert torch.equal(net[1].weight, weights_at_build), "lr 0 and init=None: the weights never change"
    explorer = TrainingExplorer(recorded_net, *tiny_loaders, lr=0.0, epochs=1, device="cpu")
    explorer.run().join(30)
    net, weights_at_build = built[-1]
    assert not torch.equal(net[1].weight, weights_at_build), "the default applies Xavier init"


def test_training_explorer_summarises_its_runs_as_cnnbook_train_does(tiny_loaders):
    explorer = TrainingExplorer(tiny_net, *tiny_loaders, lr=0.5, epochs=2, width=[2, 8], device="cpu")
    assert explorer.summary().startswith("Nothing trained yet")
    explorer.show()
    lines = explorer.summary().splitlines()
    assert len(lines) == 2 * 2, "two lines for each of the two widths"
    assert lines[0].startswith("width 2, lr 0.5: loss ") and "examples/sec on cpu" in lines[0]
    assert lines[1].startswith("profile full · 2 epochs · ")
    only = explorer.summary(width=8)
    assert only.startswith("width 8, lr 0.5: ") and len(only.splitlines()) == 2
    with pytest.raises(ValueError, match="slider settings other than epochs: width"):
        explorer.summary(epochs=2)


def test_a_choice_between_two_values_is_a_toggle_and_more_are_a_slider():
    explorer = Explorer(product, {"skips": ["yes", "no"], "blocks": [3, 10, 30]})
    toggle, slider = explorer.sliders
    assert isinstance(toggle, widgets.ToggleButtons) and toggle.label == "yes"
    assert isinstance(slider, widgets.SelectionSlider)
    toggle.index = 1  # the toggle switches the shown result as a slider does
    assert explorer.index() == (1, 0)
