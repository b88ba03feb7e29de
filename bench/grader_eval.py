"""How far a grader agrees with a person: `python bench/grader_eval.py [--grader rule|model] [--check]`.

Reads hand-labelled answer-sets (`bench/grader_eval/sets/<scenario-id>.yaml`: a whole roleplay's rep turns, a
level per rubric criterion and an overall band, written by someone reading the rubric, not the grader), replays
each against the scripted buyer, grades it, and prints:

- pairwise order: of two sets of one scenario whose labels differ, how often the grader's scores order them the
  same way (a tie counts half);
- in band: the share of sets whose grade lands in the labelled band (strong: passes; middling: 50 up to the pass
  mark; poor: under 50);
- per criterion: exact and within-one agreement with the labelled level, and quadratic weighted kappa;
- gamed passing: how many sets labelled `gamed` the grader passes.

`--check` exits 1 when the rule grader misses a target (0 gamed pass, order >= 0.95, in band >= 85%, within-one
>= 90%). A scenario author points it at their own files: `--scenarios DIR --sets DIR`. `--show` prints every set
whose grade disagrees with its label. `--grader model` uses the model configured as for `rehearse serve`
(OPENAI_API_KEY / OPENAI_BASE_URL, REHEARSE_LLM_MODEL).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.practice.grader import Grade, Grader, HeuristicGrader, weighted_score
from bot.practice.roleplay import ScriptedBuyer
from bot.practice.scenarios import Scenario, load_scenarios
from bot.practice.transcript import Turn
from bot.problems import problems_of

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"gamed_passing": 0, "order": 0.95, "in_band": 0.85, "within_one": 0.90}
GAMING = ("keywords", "pasted", "content_free", "injection", "injection_keywords", "discount",
          "competitor_bashing", "pressure_close", "off_topic", "monologue")


class AnswerSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    kind: Literal["strong", "middling", "poor", "gamed"]
    gaming: Literal[GAMING] | None = None  # type: ignore[valid-type]
    band: Literal["strong", "middling", "poor"]
    levels: dict[str, int]
    why: str
    turns: list[str] = Field(min_length=1)


class SetFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario: str
    sets: list[AnswerSet] = Field(min_length=1)


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    labelled: AnswerSet
    grade: Grade

    @property
    def labelled_score(self) -> int:
        return weighted_score((self.labelled.levels[c.id], c.weight) for c in self.scenario.rubric)

    @property
    def in_band(self) -> bool:
        return band(self.grade) == self.labelled.band


def band(grade: Grade) -> str:
    if grade.passed:
        return "strong"
    return "middling" if grade.score >= 50 else "poor"


def load_sets(directory: Path, scenarios: dict[str, Scenario]) -> list[tuple[Scenario, AnswerSet]]:
    """Every labelled set, with every mistake named by file and field (exits 2 on any)."""
    found, problems = [], []
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = SetFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        except ValidationError as exc:
            problems += [f"{path.name}: {where}: {message}" for where, message in problems_of(exc)]
            continue
        scenario = scenarios.get(data.scenario)
        if scenario is None:
            problems.append(f"{path.name}: scenario: no scenario {data.scenario!r}")
            continue
        ids = {c.id for c in scenario.rubric}
        for i, labelled in enumerate(data.sets):
            where = f"{path.name}: sets[{i}] ({labelled.id})"
            if set(labelled.levels) != ids:
                problems.append(f"{where}: levels must name exactly {', '.join(sorted(ids))}")
            elif not all(1 <= level <= 4 for level in labelled.levels.values()):
                problems.append(f"{where}: levels are 1-4")
            elif (labelled.kind == "gamed") != (labelled.gaming is not None):
                problems.append(f"{where}: gaming names the class of a gamed set, and only of one")
            else:
                found.append((scenario, labelled))
    if problems or not found:
        sys.exit("\n".join(problems or [f"{directory}: no labelled sets (*.yaml)"]))
    return found


def transcript(scenario: Scenario, rep_turns: Sequence[str]) -> list[Turn]:
    """The rep's turns with the scripted buyer's replies between them, as the thread would read."""
    buyer = ScriptedBuyer()
    turns = [Turn("buyer", scenario.opening_line)]
    for text in rep_turns:
        turns.append(Turn("rep", text))
        turns.append(buyer.reply(scenario, turns))
    return turns[:-1]


def order_accuracy(results: Sequence[Result]) -> float:
    agree = total = 0.0
    for _, group in itertools.groupby(sorted(results, key=_scenario), key=_scenario):
        for a, b in itertools.combinations(list(group), 2):
            if a.labelled_score == b.labelled_score:
                continue
            total += 1
            said, graded = a.labelled_score - b.labelled_score, a.grade.score - b.grade.score
            agree += 0.5 if graded == 0 else float((said > 0) == (graded > 0))
    return agree / total if total else 1.0


def _scenario(result: Result) -> str:
    return result.scenario.id


def quadratic_kappa(pairs: Sequence[tuple[int, int]], levels: int = 4) -> float:
    """Cohen's kappa with quadratic weights for (labelled, graded) levels 1..levels."""
    n = len(pairs)
    if n == 0:
        return 1.0
    observed = Counter(pairs)
    said, graded = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    weight = {(i, j): (i - j) ** 2 / (levels - 1) ** 2 for i in range(1, levels + 1) for j in range(1, levels + 1)}
    seen = sum(weight[cell] * count for cell, count in observed.items()) / n
    expected = sum(weight[i, j] * said[i] * graded[j] for i, j in weight) / n / n
    return 1.0 if expected == 0 else 1 - seen / expected


def report(results: Sequence[Result], grader_name: str, show: bool) -> dict[str, float]:
    pairs = [(r.labelled.levels[c.criterion], c.level) for r in results for c in r.grade.criteria]
    gamed = [r for r in results if r.labelled.kind == "gamed"]
    figures = {
        "sets": len(results),
        "order": order_accuracy(results),
        "in_band": sum(r.in_band for r in results) / len(results),
        "exact": sum(a == b for a, b in pairs) / len(pairs),
        "within_one": sum(abs(a - b) <= 1 for a, b in pairs) / len(pairs),
        "kappa": quadratic_kappa(pairs),
        "gamed": len(gamed),
        "gamed_passing": sum(r.grade.passed for r in gamed),
    }
    print(f"Grader: {grader_name} · {figures['sets']} labelled sets over "
          f"{len({r.scenario.id for r in results})} scenarios")
    print(f"  pairwise order      {figures['order']:.3f}   (target >= {TARGETS['order']})")
    print(f"  in labelled band    {figures['in_band']:.1%}   (target >= {TARGETS['in_band']:.0%})")
    print(f"  criterion exact     {figures['exact']:.1%}")
    print(f"  criterion within 1  {figures['within_one']:.1%}   (target >= {TARGETS['within_one']:.0%})")
    print(f"  quadratic kappa     {figures['kappa']:.3f}")
    print(f"  gamed sets passing  {figures['gamed_passing']} of {figures['gamed']}   (target 0)")
    print("\n  scenario                  sets  order  in band  within 1  gamed passing")
    for scenario_id, group in itertools.groupby(sorted(results, key=_scenario), key=_scenario):
        group = list(group)
        within = [abs(r.labelled.levels[c.criterion] - c.level) <= 1 for r in group for c in r.grade.criteria]
        in_band = sum(r.in_band for r in group) / len(group)
        passing = sum(r.grade.passed for r in group if r.labelled.kind == "gamed")
        print(f"  {scenario_id:<25} {len(group):>4}  {order_accuracy(group):.2f}  {in_band:>7.0%}"
              f"  {sum(within) / len(within):>8.0%}  {passing:>13}")
    by_class = Counter(r.labelled.gaming for r in gamed if r.grade.passed)
    if by_class:
        print("\n  gamed sets that pass, by class: " + ", ".join(f"{k} {v}" for k, v in sorted(by_class.items())))
    if show:
        for r in results:
            off = [f"{c.criterion} {r.labelled.levels[c.criterion]}->{c.level}" for c in r.grade.criteria
                   if abs(r.labelled.levels[c.criterion] - c.level) > 1]
            if not r.in_band or off or (r.labelled.kind == "gamed" and r.grade.passed):
                print(f"\n  {r.scenario.id}/{r.labelled.id} [{r.labelled.kind}] labelled {r.labelled.band} "
                      f"({r.labelled_score}), graded {r.grade.score}{' PASS' if r.grade.passed else ''}"
                      + (f"; off by 2+: {', '.join(off)}" if off else ""))
                for c in r.grade.criteria:
                    print(f"    {c.criterion}: {r.labelled.levels[c.criterion]} vs {c.level}  {c.feedback}")
    return figures


def model_grader() -> Grader:
    import openai

    from bot.practice.llm_grader import LLMGrader
    from bot.settings import Settings

    settings = Settings()
    if not (settings.openai_api_key or settings.openai_base_url):
        sys.exit("--grader model needs OPENAI_API_KEY or OPENAI_BASE_URL (and REHEARSE_LLM_MODEL)")
    client = openai.OpenAI(api_key=settings.openai_api_key or "unused", base_url=settings.openai_base_url)
    return LLMGrader(client, settings.llm_model, fallback=HeuristicGrader())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grader", choices=["rule", "model"], default="rule")
    parser.add_argument("--scenarios", type=Path, default=ROOT / "scenarios")
    parser.add_argument("--sets", type=Path, default=ROOT / "bench" / "grader_eval" / "sets")
    parser.add_argument("--show", action="store_true", help="print every set whose grade disagrees with its label")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    scenarios = load_scenarios(args.scenarios)
    grader = HeuristicGrader() if args.grader == "rule" else model_grader()
    results = [Result(scenario, labelled, grader.grade(scenario, transcript(scenario, labelled.turns)))
               for scenario, labelled in load_sets(args.sets, scenarios)]
    figures = report(results, args.grader, args.show)
    missed = [name for name, target in TARGETS.items()
              if (figures[name] > target if name == "gamed_passing" else figures[name] < target)]
    if args.check and missed:
        print(f"\nmissed: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
