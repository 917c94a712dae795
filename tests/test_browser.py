"""The report and the dashboard as a person sees them: opened in headless Chromium, figures counted in the
rendered page, screenshots kept in test-artifacts/ for a person to look at."""

import pytest
from browser import (
    artifact,
    chromium_page,
    dashboard_server,
    finished_tiny_study,
    needs_chromium,
    stored_small_study,
)
from optuna.trial import TrialState

from studies.report import build_sections, write_report
from studies.store.catalog import asha_settings, load_study

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory, tune_here):
    return finished_tiny_study(tmp_path_factory, tune_here)


@pytest.fixture(scope="module")
def study(study_folder):
    return load_study("tiny", f"sqlite:///{study_folder / 'tune_runs' / 'tune.db'}")


def scroll_its_box_to(line):
    """Scroll the nearest scrolling box around ``line`` (the dashboard's user attributes box is 150 px high) to the line."""
    line.evaluate(
        """line => {
            for (let box = line.parentElement; box; box = box.parentElement) {
                if (/auto|scroll/.test(getComputedStyle(box).overflowY) && box.scrollHeight > box.clientHeight) {
                    box.scrollTop += line.getBoundingClientRect().top - box.getBoundingClientRect().top;
                    return;
                }
            }
        }"""
    )


def test_report_figures_render_offline(study, tmp_path):
    (report,) = write_report(study, tmp_path / "tiny-report.html")
    figures = {section.id: section.figure for section in build_sections(study) if section.figure is not None}
    with chromium_page() as page:
        outside, errors = [], []

        def only_the_file(route):
            """Offline means nothing but the file itself is loaded: any other request is refused and recorded."""
            if route.request.url.startswith("file:"):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", only_the_file)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(report.as_uri())
        page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {2 * len(figures)}")
        assert page.locator(".js-plotly-plot").count() == len(figures)
        for name, figure in figures.items():
            plot = page.locator(f"#figure-{name}")
            assert plot.locator(".main-svg").count() >= 1, name
            plot.scroll_into_view_if_needed()
            plot.screenshot(path=artifact(f"report-{name}.png"))
            for kind in ("scatter", "bar"):
                assert plot.locator(f".{kind}layer .trace").count() == sum(trace.type == kind for trace in figure.data), name
        for name in ("history", "pareto", "learning-curves"):  # ours: every marker drawn is a trial
            markers = sum(len(trace.x) for trace in figures[name].data if "markers" in trace.mode)
            assert page.locator(f"#figure-{name} .scatterlayer .point").count() == markers, name
        history_labels = page.locator("#figure-history .textpoint text").all_text_contents()
        assert sorted(history_labels) == sorted(t.user_attrs["baseline"] for t in study.trials if "baseline" in t.user_attrs)
        curves = page.locator("#figure-learning-curves .scatterlayer .trace")
        assert curves.count() == len(figures["learning-curves"].data)
        assert page.locator("#figure-learning-curves .shapelayer path").count() == len(asha_settings(study).rungs)
        assert page.locator("#figure-compute .barlayer .point").count() == 4  # spent and saved, in seconds and in epochs
        assert page.locator("tr.selected").count() == 1
        page.screenshot(path=artifact("report-page.png"), full_page=True)
        assert outside == [] and errors == []


def test_dashboard_shows_metric_names_user_attributes_and_the_creating_command(study, study_folder):
    baseline = next(t for t in study.trials if "baseline" in t.user_attrs)
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    with dashboard_server(study_folder) as url, chromium_page() as page:
        page.goto(f"{url}/dashboard")
        page.get_by_text("tiny", exact=False).first.click()
        page.wait_for_selector("#plot-history .main-svg")
        study_page = page.url
        # The history plot: one point per finished trial, the y axis named by the objective (set_metric_names).
        page.wait_for_function(f"document.querySelectorAll('#plot-history .scatterlayer .point').length >= {len(finished)}")
        assert page.locator("#plot-history .scatterlayer .point").count() == len(finished)
        assert page.locator("#plot-history .ytitle").text_content() == "val_loss"
        page.screenshot(path=artifact("dashboard-study.png"), full_page=True)

        page.goto(f"{study_page}/trials")
        page.get_by_text(f"Trial {baseline.number}", exact=True).click()
        details = page.get_by_text("User Attributes").locator("xpath=..")
        for shown in (f"baseline {baseline.user_attrs['baseline']}", f"epochs {baseline.user_attrs['epochs']}", "train_seconds"):
            assert shown in details.inner_text(), shown
        page.screenshot(path=artifact("dashboard-trial.png"), full_page=True)
        # The attributes sit in a box that scrolls: show the epochs as a person scrolling to them would see them.
        scroll_its_box_to(page.get_by_text(f"epochs {baseline.user_attrs['epochs']}", exact=True))
        page.screenshot(path=artifact("dashboard-trial-scrolled.png"))

        page.goto(f"{study_page}/note")
        page.get_by_text("Created by").wait_for()
        assert f"Created by {study.user_attrs['created_by']} from tiny.py." in page.inner_text("body")
        page.screenshot(path=artifact("dashboard-note.png"), full_page=True)


def test_dashboard_shows_why_a_trial_failed(tmp_path):
    (tmp_path / "tune_runs").mkdir()
    study = stored_small_study(f"sqlite:///{tmp_path / 'tune_runs' / 'tune.db'}")
    (failed,) = study.get_trials(states=(TrialState.FAIL,))
    with dashboard_server(tmp_path) as url, chromium_page() as page:
        page.goto(f"{url}/dashboard")
        page.get_by_text("small", exact=False).first.click()
        page.wait_for_selector("#plot-history")
        page.goto(f"{page.url}/trials")
        page.get_by_text(f"Trial {failed.number}", exact=True).click()
        details = page.get_by_text("User Attributes").locator("xpath=..")
        assert f"fail_reason {failed.user_attrs['fail_reason']}" in details.inner_text()
        scroll_its_box_to(page.get_by_text(f"fail_reason {failed.user_attrs['fail_reason']}", exact=True))
        page.screenshot(path=artifact("dashboard-failed-trial.png"))
