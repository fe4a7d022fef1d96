"""What a notice says: a NoticeContext (facts) becomes a Message (subject, text, HTML,
Slack blocks, chart). Delivery is elsewhere; nothing here talks to the network."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from notifications.chart import render_chart
from notifications.dimensions import dimensions_cell, dimensions_header
from notifications.events import Message, NoticeEvent, label
from notifications.routing import AffectedExposure

# Slack limits: 3000 characters per section text, 150 per header, 50 blocks per message.
_SLACK_SECTION_MAX = 2900
_ROWS_IN_SLACK = 24

Table = tuple[list[str], list[list[str]]]
# The approval-needed notice's buttons (interfaces.slack answers them).
APPROVE_ACTION = "restatement_approve"
REJECT_ACTION = "restatement_reject"


@dataclass
class NoticeContext:
    """The facts of one notice.

    monthly: rows {month 'YYYY-MM', metric, dimensions (optional, "name=value, ..."),
    as_reported, restated, delta, pct (percent of as_reported)}, as
    `restate.state.status.diff_by_month` returns them.
    totals: the same per metric (and dimensions) for the whole period; summed from the
    monthly rows when not given.
    """

    restatement_id: int
    event: NoticeEvent
    models: list[str]
    period_start: date
    period_end: date
    reason: str
    ticket: str | None = None
    requested_by: str | None = None
    approved_by: str | None = None
    changelog_version: int | None = None
    monthly: list[dict[str, Any]] = field(default_factory=list)
    totals: list[dict[str, Any]] | None = None
    # SQL a reader can run to see the numbers as reported before this restatement
    # (see as_reported_query).
    as_reported_sql: str | None = None
    # Free text specific to the event: failed checks, drift details, rollback reason.
    detail: str | None = None
    # The changelog's head when the notice was composed ("changelog v42 mac 3f2a9c1e"):
    # recipients hold a checkpoint of the audit log outside the warehouse. Carried in the
    # email's X-Restate-Audit-Head header and the outbox record, never in the text a
    # finance reader reads.
    chain_head: str | None = None
    # What differs between the code that built the as-reported numbers and the code the
    # restatement ran, in words (restate.plan.code_version.change_summary).
    code_change: str | None = None
    # The validation whose numbers the notice shows: an Approve click is refused once
    # another validation replaced it.
    validation_id: str | None = None
    # Which time the event happened to this restatement (2 = promoted again after a
    # rollback): each occurrence is its own notice.
    occurrence: int = 1
    # The entity filter of the plan (None: every entity), and a forced validation.
    entities: list[str] | None = None
    forced_by: str | None = None
    force_reason: str | None = None
    # The evidence pack (approval-needed and promoted notices): where readers open it (a
    # link, or its path on the tool's host), and the page file the email attaches.
    evidence: str | None = None
    evidence_file: str | None = None

    def __post_init__(self) -> None:
        self.event = NoticeEvent(self.event)
        if self.totals is None:
            self.totals = totals_from_monthly(self.monthly)

    @property
    def key(self) -> str:
        """Stable identity of the notice, one per restatement, event and occurrence:
        'restatement-7-promoted', then 'restatement-7-promoted-2' for the second promotion."""
        suffix = "" if self.occurrence == 1 else f"-{self.occurrence}"
        return f"restatement-{self.restatement_id}-{self.event.value}{suffix}"

    @property
    def outbox_event(self) -> str:
        """The notification_outbox `event` of this notice: 'promoted', then 'promoted#2'."""
        return outbox_event(self.event, self.occurrence)

    def to_json(self) -> dict[str, Any]:
        """JSON-safe summary stored with each outbox row (monthly rows left out)."""
        body = asdict(self)
        body.pop("monthly")
        body["event"] = self.event.value
        body["period_start"] = self.period_start.isoformat()
        body["period_end"] = self.period_end.isoformat()
        body["totals"] = [{k: _jsonable(v) for k, v in t.items()} for t in self.totals or []]
        return body


def outbox_event(event: NoticeEvent | str, occurrence: int = 1) -> str:
    """'promoted' for the first occurrence (the key notices always had), 'promoted#N' after."""
    event = NoticeEvent(event)
    return event.value if occurrence == 1 else f"{event.value}#{occurrence}"


def _jsonable(v: Any) -> Any:
    return str(v) if isinstance(v, Decimal) else v


def _dec(v: Any) -> Decimal:
    if v is None:
        return Decimal(0)
    return v if isinstance(v, Decimal) else Decimal(str(v))


def totals_from_monthly(monthly: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per metric (and dimensions, when rows carry them): as_reported, restated and delta
    summed over the months; pct in percent of the as-reported total."""
    sums: dict[tuple[str, str | None], list[Decimal]] = {}
    for r in monthly:
        acc = sums.setdefault((r["metric"], r.get("dimensions")), [Decimal(0), Decimal(0)])
        acc[0] += _dec(r.get("as_reported"))
        acc[1] += _dec(r.get("restated"))
    out = []
    for (metric, dims), (before, after) in sums.items():
        delta = after - before
        row: dict[str, Any] = {"metric": metric}
        if dims is not None:
            row["dimensions"] = dims
        row.update(
            {
                "as_reported": before,
                "restated": after,
                "delta": delta,
                "pct": float(delta / abs(before) * 100) if before else None,
            }
        )
        out.append(row)
    return out


def as_reported_query(
    schema: str, models: dict[str, str], period_start: date, period_end: date, restatement_id: int
) -> str:
    """SQL for the rows a promoted restatement replaced, from each model's `<model>_as_of`
    view (archived versions carry the id of the restatement that replaced them).
    ``models`` maps each restated model to its partition date column."""
    return "\n".join(
        f"select * from {schema}.{m}_as_of\n"
        f"where replaced_by_restatement = {int(restatement_id)}\n"
        f"  and {col} between '{period_start.isoformat()}' and '{period_end.isoformat()}';"
        for m, col in models.items()
    )


# ---------------------------------------------------------------- formatting


def money(v: Any) -> str:
    return "—" if v is None else f"{_dec(v):,.2f}"


def signed(v: Any) -> str:
    return "—" if v is None else f"{_dec(v):+,.2f}"


def percent(v: Any) -> str:
    return "—" if v is None else f"{float(v):+.2f}%"


def metric_label(metric: str) -> str:
    return metric.replace("_", " ").capitalize()


_NUMBER_HEADER = ["As reported", "Restated", "Change", "Change %"]


def _has_dimensions(rows: Sequence[dict[str, Any]]) -> bool:
    return any(r.get("dimensions") for r in rows)


def _number_cells(r: dict[str, Any]) -> list[str]:
    return [money(r["as_reported"]), money(r["restated"]), signed(r["delta"]), percent(r["pct"])]


def totals_table(totals: Sequence[dict[str, Any]]) -> Table:
    cur = _has_dimensions(totals)
    header = ["Metric", *([dimensions_header(totals)] if cur else []), *_NUMBER_HEADER]
    rows = [
        [
            metric_label(t["metric"]),
            *([dimensions_cell(t.get("dimensions"), totals)] if cur else []),
            *_number_cells(t),
        ]
        for t in totals
    ]
    return header, rows


def month_table(monthly: Sequence[dict[str, Any]]) -> Table:
    cur = _has_dimensions(monthly)
    header = ["Month", "Metric", *([dimensions_header(monthly)] if cur else []), *_NUMBER_HEADER]
    ordered = sorted(monthly, key=lambda r: (str(r["month"]), str(r.get("dimensions") or ""), r["metric"]))
    rows = [
        [
            str(r["month"]),
            metric_label(r["metric"]),
            *([dimensions_cell(r.get("dimensions"), monthly)] if cur else []),
            *_number_cells(r),
        ]
        for r in ordered
    ]
    return header, rows


def text_table(table: Table) -> str:
    """Fixed-width text; the number columns (the last four) are right-aligned."""
    header, rows = table
    first_number = len(header) - len(_NUMBER_HEADER)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i >= first_number else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


# ---------------------------------------------------------------- wording


def _period(ctx: NoticeContext) -> str:
    return f"{ctx.period_start.isoformat()} to {ctx.period_end.isoformat()}"


def _models(ctx: NoticeContext) -> str:
    return ", ".join(ctx.models) or "(none)"


def headline(ctx: NoticeContext, exposures: Sequence[AffectedExposure]) -> str:
    """What happened and what it means for the reported numbers, in plain words."""
    what = f"{_models(ctx)} for {_period(ctx)}"
    boards = ", ".join(e.label for e in exposures) or "no registered dashboard"
    e = ctx.event
    if e is NoticeEvent.RESTATEMENT_PLANNED:
        return (
            f"A restatement of {what} has been planned. Reported numbers have not changed yet; "
            f"you will be told again when they do. Dashboards that will change: {boards}."
        )
    if e is NoticeEvent.VALIDATION_FAILED:
        return (
            f"The recomputed numbers for {what} failed validation and were NOT published. "
            "The numbers you see today are unchanged."
        )
    if e is NoticeEvent.APPROVAL_NEEDED:
        return (
            f"Recomputed numbers for {what} passed validation and are waiting for approval "
            "before they replace the reported numbers. An approver can use the Approve or Reject "
            f"button in Slack, or reply with `/restatement approve {ctx.restatement_id}`."
        )
    if e is NoticeEvent.PROMOTED:
        return (
            f"The corrected numbers for {what} are now live and have replaced the previously "
            f"reported numbers in: {boards}."
        )
    if e is NoticeEvent.ROLLED_BACK:
        partial = bool(ctx.detail and "Not rolled back" in ctx.detail)
        return (
            f"The restatement of {what} was rolled back: the numbers reported before it are "
            f"live again in: {boards}" + (" (except the days listed under Details)." if partial else ".")
        )
    return (
        f"Reported numbers for {what} no longer match the reference they were reconciled "
        "against. Nothing has been changed automatically."
    )


def _scope(ctx: NoticeContext) -> str:
    if not ctx.entities:
        return "every entity"
    shown = ", ".join(ctx.entities[:10]) + (
        f" and {len(ctx.entities) - 10} more" if len(ctx.entities) > 10 else ""
    )
    return f"only {len(ctx.entities)} entit{'y' if len(ctx.entities) == 1 else 'ies'}: {shown}"


def _facts(ctx: NoticeContext) -> list[tuple[str, str]]:
    facts = [
        ("Models", _models(ctx)),
        ("Period", _period(ctx)),
        ("Scope", _scope(ctx)),
        ("Reason", ctx.reason or "—"),
        ("Ticket", ctx.ticket or "—"),
        ("Requested by", ctx.requested_by or "—"),
        ("Approved by", ctx.approved_by or "—"),
    ]
    if ctx.forced_by:
        facts.append(
            (
                "Validation",
                f"failed, and was forced by {ctx.forced_by}: {ctx.force_reason or 'no reason given'}",
            )
        )
    if ctx.code_change:
        facts.append(("What changed", ctx.code_change))
    if ctx.evidence:
        facts.append(("Evidence", ctx.evidence))
    if ctx.changelog_version is not None:
        facts.append(("Audit log version", str(ctx.changelog_version)))
    return facts


# ---------------------------------------------------------------- rendering


def compose(ctx: NoticeContext, exposures: Sequence[AffectedExposure] = ()) -> Message:
    """Render the notice for every channel: same facts, same numbers everywhere."""
    title = f"Restatement #{ctx.restatement_id}: {label(ctx.event)}"
    chart = render_chart(ctx.monthly, f"Restatement #{ctx.restatement_id}: as reported vs restated")
    lead = headline(ctx, exposures)
    return Message(
        key=ctx.key,
        subject=f"[restate] {title} ({_models(ctx)}, {_period(ctx)})",
        text=_text(ctx, title, lead, exposures, chart is not None),
        html=_html(ctx, title, lead, exposures, chart is not None),
        blocks=_blocks(ctx, title, lead, exposures),
        chart_png=chart,
        chart_filename=f"{ctx.key}.png",
        chart_title=f"Restatement #{ctx.restatement_id}: as reported vs restated, per month",
        attachments=_evidence_attachment(ctx),
        audit_head=ctx.chain_head,
    )


def _evidence_attachment(ctx: NoticeContext) -> tuple[tuple[str, bytes, str], ...]:
    if not ctx.evidence_file:
        return ()
    try:
        page = Path(ctx.evidence_file).read_bytes()
    except OSError:
        return ()
    return ((f"restatement-{ctx.restatement_id}-evidence.html", page, "text/html"),)


def _text(
    ctx: NoticeContext,
    title: str,
    lead: str,
    exposures: Sequence[AffectedExposure],
    has_chart: bool,
) -> str:
    parts = [title, "=" * len(title), "", lead, ""]
    if ctx.detail:
        parts += ["Details:", ctx.detail, ""]
    parts += [f"{k}: {v}" for k, v in _facts(ctx)]
    parts.append("")
    if ctx.totals:
        parts += ["Totals for the period", text_table(totals_table(ctx.totals)), ""]
    if ctx.monthly:
        parts += ["By month", text_table(month_table(ctx.monthly)), ""]
        if has_chart:
            parts += ["A chart of as-reported vs restated numbers per month is attached.", ""]
    else:
        parts += ["No restated figures have been computed yet.", ""]
    if exposures:
        parts.append("Dashboards affected")
        parts += [f"- {e.label}" + (f": {e.url}" if e.url else "") for e in exposures]
        parts.append("")
    if ctx.as_reported_sql:
        parts += ["The numbers as reported before this restatement stay queryable:"]
        parts += [ctx.as_reported_sql, ""]
    parts.append(f"-- restate, notice {ctx.key}")
    return "\n".join(parts)


def _mrkdwn_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(s: str, limit: int = _SLACK_SECTION_MAX - 60) -> str:
    body = _mrkdwn_escape(s)
    if len(body) > limit:
        body = body[: limit - 20].rsplit("\n", 1)[0] + "\n… (truncated)"
    return f"```{body}```"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:_SLACK_SECTION_MAX]}}


def _blocks(
    ctx: NoticeContext, title: str, lead: str, exposures: Sequence[AffectedExposure]
) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        _section(_mrkdwn_escape(lead)),
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{k}*\n{_mrkdwn_escape(v)}"[:1900]} for k, v in _facts(ctx)
            ],
        },
    ]
    if ctx.detail:
        blocks.append(_section("*Details*\n" + _code(ctx.detail)))
    if ctx.totals:
        blocks.append(_section("*Totals for the period*\n" + _code(text_table(totals_table(ctx.totals)))))
    if ctx.monthly:
        header, rows = month_table(ctx.monthly)
        note = ""
        if len(rows) > _ROWS_IN_SLACK:
            note = f"\n_First {_ROWS_IN_SLACK} of {len(rows)} rows; the email has all of them._"
            rows = rows[:_ROWS_IN_SLACK]
        blocks.append(_section("*By month*\n" + _code(text_table((header, rows))) + note))
    else:
        blocks.append(_section("_No restated figures have been computed yet._"))
    if exposures:
        lines = [
            f"• <{e.url}|{_mrkdwn_escape(e.label)}>" if e.url else f"• {_mrkdwn_escape(e.label)}"
            for e in exposures
        ]
        blocks.append(_section("*Dashboards affected*\n" + "\n".join(lines)))
    if ctx.as_reported_sql:
        blocks.append(
            _section("*Numbers as reported before this restatement*\n" + _code(ctx.as_reported_sql))
        )
    if ctx.event is NoticeEvent.APPROVAL_NEEDED:
        blocks.append(_decision_buttons(ctx.restatement_id, ctx.validation_id))
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"restate · notice `{ctx.key}`"}],
        }
    )
    return blocks


def _decision_buttons(restatement_id: int, validation_id: str | None = None) -> dict[str, Any]:
    """Approve / Reject: the same gate as `/restatement approve` (listed approvers, never
    the requester); Approve asks for a confirmation, Reject for the reason. Approve carries
    the validation the notice shows ("7:3f2a9c1e0b4d"), so it never approves newer numbers."""
    rid = str(restatement_id)
    bound = f"{rid}:{validation_id}" if validation_id else rid
    return {
        "type": "actions",
        "block_id": f"decide-{rid}",
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION,
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
                "value": bound,
                "confirm": {
                    "title": {"type": "plain_text", "text": f"Approve #{rid}?"},
                    "text": {
                        "type": "mrkdwn",
                        "text": f"The restated numbers of restatement #{rid} can then be promoted.",
                    },
                    "confirm": {"type": "plain_text", "text": "Approve"},
                    "deny": {"type": "plain_text", "text": "Not yet"},
                },
            },
            {
                "type": "button",
                "action_id": REJECT_ACTION,
                "text": {"type": "plain_text", "text": "Reject"},
                "style": "danger",
                "value": rid,
            },
        ],
    }


_CSS_TABLE = "border-collapse:collapse;font-family:Arial,sans-serif;font-size:13px"
_CSS_TH = "text-align:left;border-bottom:1px solid #ccc;padding:4px 10px"
_CSS_TD = "padding:4px 10px;border-bottom:1px solid #eee"


def _html_table(table: Table) -> str:
    header, rows = table
    first_number = len(header) - len(_NUMBER_HEADER)

    def cell(tag: str, i: int, v: str) -> str:
        base = _CSS_TH if tag == "th" else _CSS_TD
        align = ";text-align:right" if i >= first_number else ""
        return f'<{tag} style="{base}{align}">{html.escape(v)}</{tag}>'

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f'<table style="{_CSS_TABLE}"><tr>{head}</tr>{body}</table>'


def _html(
    ctx: NoticeContext,
    title: str,
    lead: str,
    exposures: Sequence[AffectedExposure],
    has_chart: bool,
) -> str:
    esc = html.escape
    parts = [
        '<html><body style="font-family:Arial,sans-serif;font-size:14px;color:#1f2328">',
        f"<h2>{esc(title)}</h2>",
        f"<p>{esc(lead)}</p>",
    ]
    if ctx.detail:
        parts.append(f"<h3>Details</h3><pre>{esc(ctx.detail)}</pre>")
    facts = "".join(
        f'<tr><td style="padding:2px 12px 2px 0"><b>{esc(k)}</b></td><td>{esc(v)}</td></tr>'
        for k, v in _facts(ctx)
    )
    parts.append(f'<table style="font-size:13px">{facts}</table>')
    if ctx.totals:
        parts += ["<h3>Totals for the period</h3>", _html_table(totals_table(ctx.totals))]
    if ctx.monthly:
        parts += ["<h3>By month</h3>", _html_table(month_table(ctx.monthly))]
        if has_chart:
            parts.append("<p>A chart of as-reported vs restated numbers per month is attached.</p>")
    else:
        parts.append("<p><i>No restated figures have been computed yet.</i></p>")
    if exposures:
        items = "".join(
            f'<li><a href="{esc(e.url)}">{esc(e.label)}</a></li>' if e.url else f"<li>{esc(e.label)}</li>"
            for e in exposures
        )
        parts.append(f"<h3>Dashboards affected</h3><ul>{items}</ul>")
    if ctx.as_reported_sql:
        parts.append(
            "<h3>Numbers as reported before this restatement</h3>"
            f'<pre style="background:#f6f8fa;padding:8px">{esc(ctx.as_reported_sql)}</pre>'
        )
    parts.append(f'<p style="color:#656d76;font-size:12px">restate · notice {esc(ctx.key)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts)
