"""Scenario files: every shipped one loads, and broken ones are explained by file and field path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.practice.scenarios import Scenario, ScenarioError, load_scenarios, scenario_problems

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"

SHIPPED = {
    "discovery-impact": "discovery",
    "price-objection": "objection_handling",
    "competitor-objection": "competitive_positioning",
    "multithread-champion": "multi_threading",
    "stall-think-about-it": "closing",
    "status-quo-spreadsheets": "status_quo",
    "active-listening": "active_listening",
}


def _raw(scenario_id: str = "price-objection") -> dict[str, Any]:
    return yaml.safe_load((SCENARIOS / f"{scenario_id}.yaml").read_text(encoding="utf-8"))


def _write(directory: Path, name: str, data: dict[str, Any]) -> None:
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def test_every_shipped_scenario_loads_with_its_skill() -> None:
    scenarios = load_scenarios(SCENARIOS)

    assert {sid: s.skill for sid, s in scenarios.items()} == SHIPPED
    assert scenario_problems(SCENARIOS) == []


@pytest.mark.parametrize("scenario_id", sorted(SHIPPED))
def test_shipped_scenario_shape(scenario_id: str) -> None:
    scenario = load_scenarios(SCENARIOS)[scenario_id]

    assert 3 <= len(scenario.rubric) <= 4
    assert 8 <= len(scenario.beats) <= 24
    assert any(beat.when == "question" and beat.about for beat in scenario.beats), "the buyer answers questions"
    assert any(beat.when == "off_topic" for beat in scenario.beats), "and redirects an empty turn"
    assert 4 <= scenario.max_turns <= 8
    assert any(beat.when == "any" for beat in scenario.beats)
    assert any(beat.closes and beat.min_trust > 0 for beat in scenario.beats), "the buyer can be won over"
    assert any(beat.when == "impatient" and beat.closes for beat in scenario.beats), "and can walk away"
    assert scenario.persona.hidden_concerns
    assert all(set(criterion.levels) == {1, 2, 3, 4} for criterion in scenario.rubric)


def test_a_valid_file_round_trips(tmp_path: Path) -> None:
    _write(tmp_path, "price-objection", _raw())

    scenario = load_scenarios(tmp_path)["price-objection"]

    assert isinstance(scenario, Scenario)
    assert scenario.criterion("hold_price").checks.forbid_moves == ("discount",)


def _without(data: dict[str, Any], key: str) -> dict[str, Any]:
    data.pop(key)
    return data


def _three_levels(data: dict[str, Any]) -> dict[str, Any]:
    data["rubric"][1]["levels"].pop(4)
    return data


def _unknown_move(data: dict[str, Any]) -> dict[str, Any]:
    data["beats"][1]["when"] = "discout"
    return data


def _no_fallback(data: dict[str, Any]) -> dict[str, Any]:
    data["beats"] = [beat for beat in data["beats"] if beat["when"] != "any"]
    return data


def _no_checks(data: dict[str, Any]) -> dict[str, Any]:
    data["rubric"][0]["checks"] = {"min_count": 2}
    return data


def _typo(data: dict[str, Any]) -> dict[str, Any]:
    data["persona"]["temprament"] = data["persona"].pop("temperament")
    return data


def _one_criterion(data: dict[str, Any]) -> dict[str, Any]:
    data["rubric"] = data["rubric"][:1]
    return data


def _turn_level_check(data: dict[str, Any]) -> dict[str, Any]:
    data["rubric"][2]["checks"]["moves"] = ["pitch"]
    return data


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        (lambda d: _without(d, "goal"), "price-objection.yaml: goal: required"),
        (_three_levels, "price-objection.yaml: rubric[1].levels: needs levels 1, 2, 3 and 4"),
        (_unknown_move, "price-objection.yaml: beats[1].when: Input should be"),
        (_no_fallback, "price-objection.yaml: beats: needs at least one 'when: any' fallback beat"),
        (_no_checks, "price-objection.yaml: rubric[0].checks: needs at least one of any_phrases"),
        (_typo, "price-objection.yaml: persona.temprament: unknown field"),
        (_typo, "price-objection.yaml: persona.temperament: required"),
        (_one_criterion, "price-objection.yaml: rubric: needs at least 2 items, has 1"),
        (_turn_level_check, "price-objection.yaml: rubric[2].checks.moves: pitch are turn-level moves"),
    ],
)
def test_broken_field_is_reported_by_path(tmp_path: Path, break_it: Any, expected: str) -> None:
    _write(tmp_path, "price-objection", break_it(copy.deepcopy(_raw())))

    problems = scenario_problems(tmp_path)

    assert any(problem.startswith(expected) for problem in problems), problems


def test_id_must_match_the_file_name(tmp_path: Path) -> None:
    _write(tmp_path, "stall", _raw())

    assert scenario_problems(tmp_path) == ["stall.yaml: id: must equal the file name 'stall'"]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("id: broken\ntitle: [unclosed\nlevel: 3\n", encoding="utf-8")

    [problem] = scenario_problems(tmp_path)

    assert problem.startswith("broken.yaml: line 3, column 6: YAML syntax error")


def test_duplicate_keys_are_an_error_not_a_silent_overwrite(tmp_path: Path) -> None:
    text = (SCENARIOS / "price-objection.yaml").read_text(encoding="utf-8") + "level: 2\n"
    (tmp_path / "price-objection.yaml").write_text(text, encoding="utf-8")

    [problem] = scenario_problems(tmp_path)

    assert "duplicate key 'level'" in problem


def test_all_problems_across_all_files_are_collected_before_raising(tmp_path: Path) -> None:
    _write(tmp_path, "discovery-impact", _raw("discovery-impact"))
    _write(tmp_path, "price-objection", _three_levels(_without(_raw(), "title")))
    (tmp_path / "stall.yaml").write_text("id: stall\n  bad: indent\n", encoding="utf-8")

    with pytest.raises(ScenarioError) as caught:
        load_scenarios(tmp_path)

    problems = caught.value.problems
    assert "price-objection.yaml: title: required" in problems
    assert "price-objection.yaml: rubric[1].levels: needs levels 1, 2, 3 and 4" in problems
    assert any(problem.startswith("stall.yaml: line 2") for problem in problems)
    assert not any(problem.startswith("discovery-impact.yaml") for problem in problems)
    assert "price-objection.yaml: title" in str(caught.value)


def test_a_top_level_list_is_explained(tmp_path: Path) -> None:
    (tmp_path / "odd.yaml").write_text("- id: odd\n", encoding="utf-8")

    assert scenario_problems(tmp_path) == ["odd.yaml: expected a mapping of scenario fields at the top level"]


def test_missing_or_empty_directory_is_a_problem(tmp_path: Path) -> None:
    assert scenario_problems(tmp_path) == [f"{tmp_path}: no scenario files (*.yaml)"]
    assert scenario_problems(tmp_path / "nope") == [f"{tmp_path / 'nope'}: scenario directory not found"]
