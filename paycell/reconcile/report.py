"""The run report: counts per kind, auto-fixed, queued, totals reconciled per currency, and the
run's breaks, as the API returns it and `paycell reconcile report` prints it."""
from __future__ import annotations

import msgspec

from paycell.money import format_amount
from paycell.store import reconcile as store

BREAKS_SHOWN_MAX = 1_000


class BreakView(msgspec.Struct, kw_only=True):
    break_id: str
    kind: str
    subject: str
    payment_order_id: str | None
    disposition: str
    fix: str | None
    transaction_id: int | None
    review_id: str | None


class RunView(msgspec.Struct, kw_only=True):
    run_id: str
    kind: str
    connector: str | None
    file_sha256: str | None
    period_start: str | None
    period_end: str | None
    started_at: str
    finished_at: str | None
    lines: int
    counts: dict[str, int]
    auto_fixed: int
    queued: int
    totals: dict[str, dict]
    breaks: list[BreakView] | None = None


def run_view(run: store.Run, breaks: list[store.Break] | None = None) -> RunView:
    iso = lambda t: t.isoformat() if t else None  # noqa: E731
    totals = {currency: {k: (format_amount(int(v), currency) if k.endswith("_minor") else v) for k, v in t.items()}
              for currency, t in run.totals.items()}
    return RunView(run_id=run.run_id, kind=run.kind, connector=run.connector, file_sha256=run.file_sha256,
                   period_start=iso(run.period_start), period_end=iso(run.period_end),
                   started_at=run.started_at.isoformat(), finished_at=iso(run.finished_at), lines=run.lines,
                   counts=run.counts, auto_fixed=run.auto_fixed, queued=run.queued, totals=totals,
                   breaks=None if breaks is None else [
                       BreakView(break_id=b.break_id, kind=b.kind, subject=b.subject_key,
                                 payment_order_id=b.payment_order_id, disposition=b.disposition, fix=b.fix,
                                 transaction_id=b.transaction_id, review_id=b.review_id) for b in breaks])


def text(view: RunView) -> list[str]:
    """The report as lines of text (the CLI)."""
    head = (f"run {view.run_id} {view.kind}{' ' + view.connector if view.connector else ''} "
            f"started {view.started_at} finished {view.finished_at or '-'}")
    out = [head]
    if view.file_sha256:
        out.append(f"  file {view.file_sha256}: {view.lines} lines, period {view.period_start} .. {view.period_end}")
    out.append(f"  auto-fixed {view.auto_fixed}, queued {view.queued}")
    for kind, n in sorted(view.counts.items()):
        out.append(f"  {kind:<34} {n}")
    for currency, t in sorted(view.totals.items()):
        out.append(f"  {currency}: " + ", ".join(f"{k} {v}" for k, v in t.items()))
    for b in view.breaks or []:
        out.append(f"  break {b.break_id} {b.kind} {b.subject} -> {b.disposition}"
                   f"{' (' + b.fix + ')' if b.fix else ''}{' review ' + b.review_id if b.review_id else ''}")
    return out
