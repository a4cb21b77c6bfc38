"""A self-contained HTML report of a comparison: one file, no network, images inlined.

It holds the settings, the metrics table, the judge's scores and rationales, every answer
beside its reference, and the loss curves of the tuned jobs involved.
"""

from __future__ import annotations

import base64
import time
from html import escape
from pathlib import Path

from tunelab import __version__
from tunelab.evaluate import switch
from tunelab.evaluate.compare import Comparison
from tunelab.evaluate.fluency import (
    LOOP_N,
    LOOP_REPEATS,
    LOOP_TAIL_COPIES,
    LOOP_TAIL_SHARE,
    SAME_SCRIPT_SHARE,
    AnswerCheck,
)
from tunelab.evaluate.metrics import chrf
from tunelab.evaluate.plots import job_loss_series, loss_curve_png
from tunelab.evaluate.runner import Answer, ModelResult

# key, heading, format: the report's table and the terminal's
METRIC_COLUMNS = (
    ("chrf", "chrF", "{:.1f}"),
    ("rouge_l", "ROUGE-L", "{:.3f}"),
    ("length_ratio", "length / ref", "{:.2f}"),
    ("loop_share", "answers in a loop", "{:.0%}"),
    ("distinct_2", "distinct-2", "{:.2f}"),
    ("language_match", "in the question's language", "{:.0%}"),
    ("mixed_script_answers", "answers mixing scripts", "{:d}"),
    ("latency_p50_s", "latency p50 (s)", "{:.2f}"),
    ("latency_p95_s", "latency p95 (s)", "{:.2f}"),
    ("cost_per_1k_requests", "$ / 1k requests", "{:.4f}"),
    ("valid_loss", "validation loss", "{:.4f}"),
    ("valid_mean_token_accuracy", "token accuracy", "{:.3f}"),
    ("perplexity", "perplexity", "{:.2f}"),
    ("reward_accuracy", "reward accuracy (pairs)", "{:.0%}"),
)
FLUENCY_NOTE = (f"An answer is in a loop when a run of {LOOP_N} words occurs {LOOP_REPEATS}+ "
                f"times in it, or it ends in one span said {LOOP_TAIL_COPIES}+ times in a row "
                f"over {LOOP_TAIL_SHARE:.0%}+ of its characters. distinct-2: unique word bigrams "
                "over all word bigrams of the model's answers. Language: an answer is in the "
                f"question's language when {SAME_SCRIPT_SHARE:.0%}+ of its letters are in the "
                "question's script (Cyrillic, Latin or other); it tells Russian from English, "
                "not languages that share a script. An answer mixes scripts when no script "
                f"holds {SAME_SCRIPT_SHARE:.0%} of its letters.")
JUDGE_COLUMNS = (("persona", "judge: persona", "{:.1f}"),
                 ("helpfulness", "judge: helpfulness", "{:.1f}"),
                 ("win_rate", "judge: win rate", "{:.0%}"))

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: .4em .6em; vertical-align: top; text-align: left; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.answers td { white-space: pre-wrap; max-width: 40em; }
.muted { color: #777; font-size: .9em; }
"""


def fmt(value: object, pattern: str) -> str:
    """A metric for display; '-' where there is none."""
    return "-" if value is None else pattern.format(value)


def metric_cell(result: ModelResult, values: dict[str, object], key: str, pattern: str) -> str:
    """One model's metric for display: 'n/a' where the model cannot have it (the reason is
    in `unavailable_notes`), '-' where it has none."""
    return "n/a" if key in result.unavailable else fmt(values.get(key), pattern)


def unavailable_notes(comparison: Comparison) -> list[str]:
    """Why a model has no value for a metric, one line per model and metric."""
    titles = {key: title for key, title, _ in METRIC_COLUMNS}
    return [f"{titles.get(key, key)} of {result.spec.label}: {why}"
            for result in comparison.results for key, why in result.unavailable.items()]


def render_html(comparison: Comparison) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>tunelab compare</title>", f"<style>{_STYLE}</style></head><body>",
        "<h1>Model comparison</h1>", _summary(comparison), _can_we_switch(comparison),
        _metrics_table(comparison),
        _loss_curves(comparison), _answers(comparison), "</body></html>",
    ]
    return "\n".join(part for part in parts if part)


def write_report(comparison: Comparison, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(comparison), encoding="utf-8")
    return path


def _summary(comparison: Comparison) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in comparison.settings.to_dict().items())
    judge = escape(comparison.judge.label) if comparison.judge else "none"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (f"<p class='muted'>tunelab {__version__}, {stamp}</p>"
            f"<p>Eval file: <code>{escape(comparison.eval_file)}</code>, "
            f"{len(comparison.items)} examples. Settings: <code>{escape(settings)}</code>. "
            f"Judge: {judge}. Answer cache: {comparison.cache_hits} hits, "
            f"{comparison.cache_misses} misses.</p>")


def _can_we_switch(comparison: Comparison) -> str:
    """The answer first, when a recorded model is in the comparison: may each candidate
    replace it, and the numbers that decided (evaluate/switch.py states the rule)."""
    if not comparison.switch:
        return ""
    rows = []
    for verdict in comparison.switch:
        answer = "Yes" if verdict.switch else "Not yet"
        latency = (f"{fmt(verdict.latency_p50_s, '{:.2f}')} s against "
                   f"{fmt(verdict.recorded_latency_p50_s, '{:.2f}')} s")
        reasons = "".join(f"<li>{escape(reason)}</li>" for reason in verdict.reasons)
        rows.append(f"<h3>{answer}: {escape(verdict.candidate)} "
                    f"{'can' if verdict.switch else 'cannot yet'} replace "
                    f"<code>{escape(verdict.recorded)}</code></h3><ul>{reasons}"
                    f"<li>chrF {verdict.chrf:.1f}, ROUGE-L {verdict.rouge_l:.3f} against the "
                    f"recorded answers; latency p50 {latency}</li></ul>")
    return ("<h2>Can we switch?</h2>" + "".join(rows) +
            f"<p class='muted'>The bar: with a judge, a win rate of at least "
            f"{switch.WIN_BAR:.0%} (50% is parity); without one, chrF at least "
            f"{switch.CHRF_BAR:g} and ROUGE-L at least {switch.ROUGE_BAR:.2f} against the "
            "recorded answers. Read the answers below before you switch.</p>")


def _metrics_table(comparison: Comparison) -> str:
    columns = METRIC_COLUMNS + (JUDGE_COLUMNS if comparison.judge else ())
    head = "".join(f"<th>{escape(title)}</th>" for _, title, _ in columns)
    rows = []
    for result in comparison.results:
        values = {**result.metrics, **(result.judge or {})}
        cells = "".join(f"<td class='num'>{metric_cell(result, values, key, pattern)}</td>"
                        for key, _, pattern in columns)
        rows.append(f"<tr><th>{escape(result.spec.label)}<div class='muted'>"
                    f"{escape(result.spec.provider)}: {escape(result.spec.model)}</div></th>"
                    f"{cells}</tr>")
    notes = "".join(f"<p class='muted'>{escape(note)}</p>"
                    for note in unavailable_notes(comparison))
    return (f"<h2>Metrics</h2><table><tr><th>model</th>{head}</tr>{''.join(rows)}</table>"
            f"{notes}<p class='muted'>{escape(FLUENCY_NOTE)}</p>")


def _loss_curves(comparison: Comparison) -> str:
    images = []
    for result in comparison.results:
        job_id = result.spec.job_id
        series = job_loss_series(job_id) if job_id else {}
        if not series:
            continue
        title = job_id if result.spec.label == job_id else f"{result.spec.label} ({job_id})"
        png = loss_curve_png(title, series)
        data = base64.b64encode(png).decode("ascii")
        images.append(f"<figure><img alt='loss curve of {escape(job_id)}' "
                      f"src='data:image/png;base64,{data}'><figcaption>"
                      f"{escape(result.spec.label)}</figcaption></figure>")
    return "<h2>Loss curves</h2>" + "".join(images) if images else ""


def _answers(comparison: Comparison) -> str:
    labels = [result.spec.label for result in comparison.results]
    blocks = ["<h2>Answers</h2>"]
    for index, item in enumerate(comparison.items):
        head = "".join(f"<th>{escape(label)}</th>" for label in labels)
        cells = "".join(_answer_cell(r.answers[index], r.checks[index], item.reference)
                        for r in comparison.results)
        blocks.append(f"<h3>{index + 1}. {escape(item.question)}</h3>"
                      f"<table class='answers'><tr><th>reference</th>{head}</tr>"
                      f"<tr><td>{escape(item.reference)}</td>{cells}</tr></table>")
        blocks.extend(_verdict_lines(comparison, index))
    return "\n".join(blocks)


def _answer_cell(answer: Answer, check: AnswerCheck, reference: str) -> str:
    """The answer, then how close it came, how long it took, and what a reader would
    stumble on: a loop, or another language than the question's."""
    note = (f"chrF {chrf(answer.text, reference):.1f}, {answer.latency_s:.2f} s, "
            f"distinct-2 {fmt(check.distinct_2, '{:.2f}')}" + (", cached" if answer.cached else ""))
    flags = answer_flags(check)
    warning = f"<div><strong>{escape('; '.join(flags))}</strong></div>" if flags else ""
    return f"<td>{escape(answer.text)}{warning}<div class='muted'>{note}</div></td>"


def answer_flags(check: AnswerCheck) -> list[str]:
    """What is wrong with one answer, in words (the report and the terminal say the same)."""
    flags = ["loops"] if check.loop else []
    if check.same_language is False:
        flags.append(f"not in the question's language (answer mostly in {check.script or 'no'}"
                     " script)")
    if check.mixed_script:
        flags.append("mixed scripts")
    return flags


def _verdict_lines(comparison: Comparison, index: int) -> list[str]:
    lines = []
    for verdict in comparison.item_verdicts(index):
        order = " → ".join(escape(label) for label in verdict.order)
        text = escape(verdict.error or verdict.rationale)
        lines.append(f"<p class='muted'>judge (order {order}): {text}</p>")
    return lines
