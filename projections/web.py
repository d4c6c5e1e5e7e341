"""Server-rendered dashboard pages (plain HTML strings, a little inline JS; no front-end build).

Pure rendering: each function takes the same dicts the JSON API returns and gives an HTML page. Money is
shown in USD, rates in %. The config forms convert USD → micros and % → bps, validate in the browser
(seed 6.1: with the kill switch on and ``budgetedDynamic`` selected, B_u > 0 and r_min ≤ r_max), POST to
the JSON API, and show each error next to its field.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote

from models.units import MICROS, pct, pct_points, usd, usd_amount

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1d2733;background:#f6f7f9}
header{background:#1d2733;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;align-items:center}
header a{color:#cfe0ff;text-decoration:none}main{padding:1rem 1.2rem;max-width:1200px}
table{border-collapse:collapse;background:#fff;margin:.5rem 0 1.2rem}
th,td{border:1px solid #dde2e8;padding:.3rem .55rem;text-align:right;font-size:.9rem}
th{background:#eef1f5}td.l,th.l{text-align:left}
.tiles{display:flex;gap:.8rem;flex-wrap:wrap;margin:.6rem 0 1rem}
.tile{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:.6rem .9rem;min-width:150px}
.tile .k{font-size:.8rem;color:#5b6776}.tile .v{font-size:1.4rem;font-weight:600}
form.cfg{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:.8rem 1rem;margin:.5rem 0 1rem;
max-width:640px}form.cfg .row{display:grid;grid-template-columns:200px 180px 1fr;gap:.6rem;
align-items:center;margin:.3rem 0}.error{color:#b00020;font-size:.85rem}.ok{color:#0a6b2b}
.note{color:#5b6776;font-size:.85rem}.banner{background:#fff3cd;border:1px solid #e0c46c;padding:.5rem .8rem}
"""


def when(ms: int | None) -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def e(value: Any) -> str:
    return escape("" if value is None else str(value))


def layout(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{e(title)} — copybot</title><style>{STYLE}</style></head><body>"
        "<header><strong>copybot</strong><a href='/'>Leaders</a><a href='/config'>Config</a>"
        "<a href='/docs'>API docs</a></header>"
        f"<main><h1>{e(title)}</h1>{body}</main></body></html>"
    )


def _leader_link(row: dict[str, Any]) -> str:
    label = row["label"] if row["label"] == row["id"] else f"{row['label']} ({row['id']})"
    return f"<a href='/users/{quote(row['id'], safe='')}'>{e(label)}</a>"


def summary_table(rows: list[dict[str, Any]]) -> str:
    """The budget summary table (seed 7.2), one row per leader."""
    if not rows:
        return "<p class='note' id='summary-empty'>No leader projected yet.</p>"
    head = (
        "<table id='summary'><thead><tr><th class='l'>Leader</th><th class='l'>Sizing mode</th>"
        "<th>Budget B_u</th><th class='l'>Enforcement</th><th>r_min</th><th>r_max</th>"
        "<th>Leader exposure E_u</th><th>Our exposure</th><th>r_u</th><th>Headroom</th><th>Utilization</th>"
        "<th>Realized PnL</th><th>Unrealized PnL</th><th>Reserved</th><th>Open orders</th>"
        "<th>Executed / skipped</th></tr></thead><tbody>"
    )
    body = []
    for r in rows:
        mode = r["sizingMode"] + (
            "" if r["budgetedDynamicActive"] or r["sizingMode"] == "fixedRate" else " (off)"
        )
        exposure = usd_amount(r["leaderExposureUsdc"])
        if r["leaderExposureStatus"] not in (None, "fresh"):
            exposure += f" ({r['leaderExposureStatus']})"
        body.append(
            f"<tr data-leader='{e(r['id'])}'><td class='l'>{_leader_link(r)}</td><td class='l'>{e(mode)}</td>"
            f"<td class='budget'>{usd_amount(r['budgetUsdc'])}</td>"
            f"<td class='l'>{e(r['budgetEnforcement'])}</td>"
            f"<td class='r-min'>{pct_points(r['rMin'])}</td><td class='r-max'>{pct_points(r['rMax'])}</td>"
            f"<td>{e(exposure)}</td><td>{usd_amount(r['execExposureUsdc'])}</td>"
            f"<td class='r-u'>{pct_points(r['rU'], 4)}</td><td>{usd_amount(r['budgetHeadroomUsdc'])}</td>"
            f"<td>{pct_points(r['utilizationPct'], 1)}</td>"
            f"<td class='realized-pnl'>{usd_amount(r['realizedPnlUsdc'])}</td>"
            f"<td class='unrealized-pnl'>{usd_amount(r['unrealizedPnlUsdc'])}</td>"
            f"<td class='reserved'>{usd_amount(r['reservedUsdc'])}</td>"
            f"<td class='open-orders'>{r['openOrders']:,}</td>"
            f"<td>{r['executed']:,} / {r['skipped']:,}</td></tr>"
        )
    return head + "".join(body) + "</tbody></table>"


def overview_page(rows: list[dict[str, Any]]) -> str:
    body = (
        "<p class='note'>Every leader seen in an attempt, a snapshot or a USER config document. "
        "Change budgets on <a href='/config'>Config</a>.</p>" + summary_table(rows)
    )
    return layout("Leaders", body)


# --- config forms -------------------------------------------------------------------------------------

SIZING_FIELDS: tuple[tuple[str, str, str, str], ...] = (
    # (config key, field id suffix, label, kind: select | usd | pct)
    ("sizingMode", "sizingMode", "Sizing mode", "select"),
    ("budgetUsdcMicros", "budgetUsd", "Budget (USD)", "usd"),
    ("budgetRMinBps", "rMinPct", "r_min (%)", "pct"),
    ("budgetRMaxBps", "rMaxPct", "r_max (%)", "pct"),
    ("minLeaderTradeNotionalMicros", "minLeaderTradeUsd", "Min leader trade ($)", "usd"),
    ("budgetEnforcement", "budgetEnforcement", "Enforcement", "select"),
)
CHOICES = {"sizingMode": ("fixedRate", "budgetedDynamic"), "budgetEnforcement": ("hard", "soft")}


def _shown(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind == "usd":
        return f"{value / MICROS:g}"
    if kind == "pct":
        return f"{value / 100:g}"
    return str(value)


def _field(prefix: str, key: str, suffix: str, label: str, kind: str, value: Any, inherit: str | None) -> str:
    """One form row; `inherit` (the inherited value, shown) makes it inherit-friendly (blank = inherit)."""
    fid = f"{prefix}-{suffix}"
    if kind == "select":
        options = []
        if inherit is not None:
            options.append(
                f"<option value=''{' selected' if value is None else ''}>inherit ({e(inherit)})</option>"
            )
        for choice in CHOICES[key]:
            options.append(
                f"<option value='{choice}'{' selected' if value == choice else ''}>{choice}</option>"
            )
        control = f"<select id='{fid}' name='{key}'>{''.join(options)}</select>"
    else:
        placeholder = f" placeholder='inherit ({e(inherit)})'" if inherit is not None else ""
        control = (
            f"<input id='{fid}' name='{key}' type='text' inputmode='decimal' "
            f"value='{e(_shown(kind, value))}'{placeholder}>"
        )
    return (
        f"<div class='row'><label for='{fid}'>{e(label)}</label>{control}"
        f"<span class='error' id='{fid}-error'></span></div>"
    )


def _inherit_text(kind: str, value: Any) -> str:
    if kind == "usd":
        return usd(value)
    if kind == "pct":
        return f"{value / 100:g}%"
    return str(value)


SCRIPT = """
const FIELDS = %(fields)s;
const CTX = %(ctx)s;
function clearErrors(prefix) {
  document.querySelectorAll('[id^="' + prefix + '-"][id$="-error"]').forEach(el => el.textContent = '');
  const s = document.getElementById(prefix + '-status'); s.textContent = ''; s.className = '';
}
function showError(prefix, suffix, text) {
  const el = document.getElementById(prefix + '-' + suffix + '-error')
    || document.getElementById(prefix + '-status');
  el.textContent = (el.textContent ? el.textContent + ' ' : '') + text;
  if (el.id.endsWith('-status')) el.className = 'error';
}
function showAll(prefix, errors) {
  for (const [suffix, msg] of Object.entries(errors)) showError(prefix, suffix, msg);
  return Object.keys(errors).length > 0;
}
function collect(prefix, inherit) {
  const values = {}, errors = {};
  for (const [key, suffix, label, kind] of FIELDS) {
    const raw = document.getElementById(prefix + '-' + suffix).value.trim();
    if (raw === '') { if (inherit) values[key] = null; else errors[suffix] = 'required'; continue; }
    if (kind === 'select') { values[key] = raw; continue; }
    const num = Number(raw.replace(/[$,%%\\s]/g, ''));
    if (!Number.isFinite(num) || num < 0) { errors[suffix] = 'enter a number ≥ 0'; continue; }
    values[key] = Math.round(kind === 'usd' ? num * 1e6 : num * 100);
  }
  return [values, errors];
}
function budgetChecks(eff, errors) {
  // seed 6.1: only while the kill switch is on and the mode is budgetedDynamic
  if (!(eff.budgetedDynamicEnabled && eff.sizingMode === 'budgetedDynamic')) return;
  if (!(eff.budgetUsdcMicros > 0))
    errors.budgetUsd = errors.budgetUsd || 'must be > 0 while Budgeted Dynamic is on';
  if (eff.budgetRMinBps > eff.budgetRMaxBps) errors.rMinPct = errors.rMinPct || 'r_min must be ≤ r_max';
}
async function post(prefix, url, body) {
  const headers = {'Content-Type': 'application/json'};
  const tok = document.getElementById('api-token');
  if (tok && tok.value) {
    headers['Authorization'] = 'Bearer ' + tok.value;
    localStorage.setItem('copybotToken', tok.value);
  }
  const status = document.getElementById(prefix + '-status');
  status.textContent = 'saving…';
  let res;
  try { res = await fetch(url, {method: 'POST', headers, body: JSON.stringify(body)}); }
  catch (err) { status.textContent = 'request failed: ' + err; status.className = 'error'; return; }
  const data = await res.json().catch(() => ({}));
  if (res.ok) {
    status.className = 'ok';
    const warned = data.warnings.length ? ' (warnings: ' + data.warnings.join('; ') + ')' : '';
    status.textContent = 'Published change ' + data.changeId + warned +
      '. The summary updates once the worker and the projector have caught up.';
    return;
  }
  status.textContent = '';
  const errors = data.errors || [data.detail ? JSON.stringify(data.detail) : ('HTTP ' + res.status)];
  for (const msg of errors) {
    const hit = FIELDS.find(([key]) => msg.includes('sizing.' + key + ':'));
    if (hit) showError(prefix, hit[1], msg.replace(/^.*?sizing\\.\\w+: /, ''));
    else if (msg.includes('sizing.budgetedDynamicEnabled:')) showError(prefix, 'budgetedDynamicEnabled', msg);
    else if (msg.includes('leader.label:'))
      showError(prefix, 'label', msg.replace(/^.*?leader\\.label: /, ''));
    else showError(prefix, 'status', msg);
  }
}
async function submitGlobal(ev) {
  ev.preventDefault(); clearErrors('g');
  const [values, errors] = collect('g', false);
  values.budgetedDynamicEnabled = document.getElementById('g-budgetedDynamicEnabled').checked;
  budgetChecks(values, errors);
  if (showAll('g', errors)) return;
  await post('g', '/api/config/global', {sizing: values});
}
async function submitUser(ev) {
  ev.preventDefault(); clearErrors('u');
  const [values, errors] = collect('u', true);
  const eff = Object.assign({}, CTX.inherited);
  for (const [k, v] of Object.entries(values)) if (v !== null) eff[k] = v;
  eff.budgetedDynamicEnabled = CTX.inherited.budgetedDynamicEnabled;
  budgetChecks(eff, errors);
  if (showAll('u', errors)) return;
  const label = document.getElementById('u-label').value.trim();
  const body = {sizing: values, leader: {label: label === '' ? null : label}};
  await post('u', '/api/config/user/' + encodeURIComponent(CTX.leader), body);
}
document.addEventListener('DOMContentLoaded', () => {
  const tok = document.getElementById('api-token');
  if (tok && !tok.value) tok.value = localStorage.getItem('copybotToken') || '';
  document.getElementById('global-form').addEventListener('submit', submitGlobal);
  const uf = document.getElementById('user-form'); if (uf) uf.addEventListener('submit', submitUser);
});
"""


def config_page(
    *,
    global_docs: dict[str, Any],
    global_effective: dict[str, Any],
    leaders: list[str],
    leader: str | None,
    user_docs: dict[str, Any],
    summary: list[dict[str, Any]],
    token_required: bool,
    problem: str | None,
    config_version: str | None,
) -> str:
    """``/config``: global sizing (seed 6.1), a per-leader override (6.2), the budget summary (7.2)."""
    parts = []
    if problem:
        parts.append(f"<p class='banner' id='config-problem'>{e(problem)}</p>")
    parts.append(f"<p class='note'>configVersion: {e(config_version or '— (no change accepted yet)')}</p>")
    if token_required:
        parts.append(
            "<p><label for='api-token'>API token (writes): </label>"
            "<input id='api-token' type='password' autocomplete='off'></p>"
        )
    kill = bool(global_effective.get("budgetedDynamicEnabled"))
    rows = [
        "<div class='row'><label for='g-budgetedDynamicEnabled'>Budgeted Dynamic enabled "
        "(kill switch)</label>"
        f"<input id='g-budgetedDynamicEnabled' type='checkbox'{' checked' if kill else ''}>"
        "<span class='error' id='g-budgetedDynamicEnabled-error'></span></div>"
    ]
    for key, suffix, label, kind in SIZING_FIELDS:
        rows.append(_field("g", key, suffix, label, kind, global_effective.get(key), None))
    parts.append(
        "<h2>Global sizing</h2><form class='cfg' id='global-form' novalidate>"
        + "".join(rows)
        + "<button type='submit' id='g-save'>Save global</button> <span id='g-status'></span></form>"
    )
    options = "".join(
        f"<option value='{e(u)}'{' selected' if u == leader else ''}>{e(u)}</option>" for u in leaders
    )
    parts.append(
        "<h2>Leader override</h2><form method='get' action='/config' id='leader-pick'>"
        f"<label for='leader-select'>Leader </label>"
        f"<select id='leader-select' name='leader'>{options}</select> <button type='submit'>Edit</button> "
        "<span class='note'>(a leader not listed: /config?leader=ID)</span>"
        "</form>"
    )
    if leader is not None:
        sizing = user_docs.get("sizing", {})
        rows = []
        for key, suffix, label, kind in SIZING_FIELDS:
            inherited = _inherit_text(kind, global_effective.get(key))
            rows.append(_field("u", key, suffix, label, kind, sizing.get(key), inherited))
        label_value = user_docs.get("leader", {}).get("label")
        rows.append(
            "<div class='row'><label for='u-label'>Label</label>"
            f"<input id='u-label' type='text' value='{e(label_value)}' placeholder='inherit ({e(leader)})'>"
            "<span class='error' id='u-label-error'></span></div>"
        )
        parts.append(
            f"<form class='cfg' id='user-form' data-leader='{e(leader)}' novalidate>"
            f"<p class='note'>Overrides for <strong>{e(leader)}</strong>. Blank = inherit the global value "
            "(the key is left out).</p>"
            + "".join(rows)
            + "<button type='submit' id='u-save'>Save override</button> <span id='u-status'></span></form>"
        )
    parts.append("<h2>Budget summary</h2>" + summary_table(summary))
    ctx = {"leader": leader, "inherited": {**global_effective, "budgetedDynamicEnabled": kill}}
    script = SCRIPT % {
        "fields": json.dumps([list(f) for f in SIZING_FIELDS]),
        "ctx": json.dumps(ctx).replace("</", "<\\/"),
    }
    parts.append(f"<script>{script}</script>")
    del global_docs  # the forms show effective values; stored documents are at /api/config/global
    return layout("Config", "".join(parts))


# --- a leader -----------------------------------------------------------------------------------------


def _tile(key: str, value: str, tile_id: str) -> str:
    return (
        f"<div class='tile' id='tile-{tile_id}'><div class='k'>{e(key)}</div>"
        f"<div class='v'>{e(value)}</div></div>"
    )


@dataclass(frozen=True, slots=True)
class ChartScale:
    """Maps decision time and USD to the chart's pixels."""

    t0: int
    t1: int
    low: float
    high: float
    width: int = 760
    height: int = 260
    pad: tuple[int, int, int, int] = (64, 12, 10, 28)  # left, right, top, bottom

    def x(self, t: int) -> float:
        left, right = self.pad[0], self.width - self.pad[1]
        return float(left + (t - self.t0) / max(self.t1 - self.t0, 1) * (right - left))

    def y(self, v: float) -> float:
        top, bottom = self.pad[2], self.height - self.pad[3]
        return float(top + (self.high - v) / (self.high - self.low) * (bottom - top))


def _scale(history: list[dict[str, Any]], pnl: list[dict[str, Any]]) -> ChartScale:
    times = [p["t"] for p in history] + [p["t"] for p in pnl]
    values = [p["execExposureUsdc"] for p in history] + [p["budgetUsdc"] or 0 for p in history]
    values += [p["pnlUsdc"] for p in pnl]
    high = max(max(values), 1e-9) * 1.1
    low = min(min(values), 0) * 1.1
    return ChartScale(min(times), max(times), low, high)


def _steps(sc: ChartScale, points: list[dict[str, Any]], key: str) -> str:
    """A step line: each value holds until the next point."""
    out = []
    for i, p in enumerate(points):
        if i:
            out.append(f"{sc.x(p['t']):.1f},{sc.y(points[i - 1][key] or 0):.1f}")
        out.append(f"{sc.x(p['t']):.1f},{sc.y(p[key] or 0):.1f}")
    return " ".join(out)


def _mode_label(m: dict[str, Any]) -> str:
    if m["killSwitch"]:
        state = "kill switch " + ("on" if m["budgetedDynamicEnabled"] else "off")
    else:
        state = m["sizingMode"] + ("" if m["budgetedDynamicActive"] else " (off)")
    return f"{state}, {m['budgetEnforcement'].upper()} ({m['configVersion'] or 'defaults'})"


def _mode_marks(sc: ChartScale, marks: list[dict[str, Any]]) -> str:
    out = []
    for i, m in enumerate(marks):
        x, label = sc.x(m["t"]), _mode_label(m)
        row = sc.pad[2] + 26 + 12 * (i % 4)  # staggered: changes close in time do not overprint
        out.append(
            f"<g class='mode-change' data-t='{m['t']}'><title>{e(when(m['t']))}: {e(label)}</title>"
            f"<line x1='{x:.1f}' y1='{sc.pad[2]}' x2='{x:.1f}' y2='{sc.y(sc.low):.1f}' stroke='#8e44ad' "
            "stroke-dasharray='2,3'/>"
            f"<text x='{x + 3:.1f}' y='{row}' font-size='10' fill='#8e44ad'>{e(label)}</text></g>"
        )
    return "".join(out)


def exposure_chart(
    history: list[dict[str, Any]],
    pnl: list[dict[str, Any]] | None = None,
    marks: list[dict[str, Any]] | None = None,
) -> str:
    """Inline SVG over decision time: our exposure (line) against the budget in force (dashed), PnL
    (realized + unrealized, from the leaderBooks), and a mark where the kill switch or the mode changed."""
    pnl, marks = pnl or [], marks or []
    if not history and not pnl:
        return "<p class='note'>No attempts yet.</p>"
    sc = _scale(history, pnl)
    ours = " ".join(f"{sc.x(p['t']):.1f},{sc.y(p['execExposureUsdc']):.1f}" for p in history)
    w, h, left = sc.width, sc.height, sc.pad[0]
    return (
        f"<svg id='exposure-chart' width='{w}' height='{h}' viewBox='0 0 {w} {h}' "
        "role='img' aria-label='our exposure against the budget, and PnL' "
        "style='background:#fff;border:1px solid #dde2e8'>"
        f"<line x1='{left}' y1='{sc.y(0):.1f}' x2='{w - sc.pad[1]}' y2='{sc.y(0):.1f}' stroke='#aab'/>"
        f"<line x1='{left}' y1='{sc.pad[2]}' x2='{left}' y2='{sc.y(sc.low):.1f}' stroke='#aab'/>"
        f"<text x='{left - 4}' y='{sc.pad[2] + 10}' text-anchor='end' font-size='11'>"
        f"{e(usd_amount(sc.high))}</text>"
        f"<text x='{left - 4}' y='{sc.y(0):.1f}' text-anchor='end' font-size='11'>$0</text>"
        f"<text x='{left}' y='{h - 8}' font-size='11'>{e(when(sc.t0))}</text>"
        f"<text x='{w - sc.pad[1]}' y='{h - 8}' text-anchor='end' font-size='11'>{e(when(sc.t1))}</text>"
        f"<polyline points='{_steps(sc, history, 'budgetUsdc')}' fill='none' stroke='#c0392b' "
        "stroke-dasharray='5,4'/>"
        f"<polyline id='exposure-line' points='{ours}' fill='none' stroke='#2463eb' stroke-width='1.6'/>"
        f"<polyline id='pnl-line' points='{_steps(sc, pnl, 'pnlUsdc')}' fill='none' stroke='#0a8f3c' "
        "stroke-width='1.4'/>"
        + _mode_marks(sc, marks)
        + f"<text x='{w - sc.pad[1]}' y='{sc.pad[2] + 10}' text-anchor='end' font-size='11'>"
        "<tspan fill='#2463eb'>— our exposure</tspan> "
        "<tspan fill='#c0392b'>- - budget B_u</tspan> <tspan fill='#0a8f3c'>— PnL</tspan> "
        "<tspan fill='#8e44ad'>┊ mode change</tspan></text></svg>"
    )


HARD_NOTE = (
    "Why utilization can exceed 100 % under HARD: the budget is enforced when a group is decided "
    "(our exposure + open BUY reservations + the target ≤ B_u), against the marks of that moment. "
    "But marks move after fills: every held position is revalued at the latest price of its asset, "
    "so a market that moves up pushes our exposure past B_u without any purchase; the next BUYs are "
    "then skipped (BUDGET_HARD_CAP_EXCEEDED) until marks fall, positions are sold or a market "
    "resolves. While Budgeted Dynamic is off (the kill switch, or fixedRate: the mode changes on "
    "the chart) nothing caps what is bought, and what was bought then still counts once it is on."
)


def _tiles(s: dict[str, Any], hard: bool) -> list[str]:
    exposure = usd_amount(s["leaderExposureUsdc"])
    if s["leaderExposureStatus"] not in (None, "fresh"):
        exposure += f" ({s['leaderExposureStatus']})"
    tiles = [
        _tile("Leader exposure (E_u)", exposure, "e-u"),
        _tile("Budget (B_u)", usd_amount(s["budgetUsdc"]), "b-u"),
        _tile("Computed copy rate (r_u)", pct_points(s["rU"], 4), "r-u"),
        _tile("Our exposure", usd_amount(s["execExposureUsdc"]), "ours"),
    ]
    if hard:
        tiles += [
            _tile("Budget headroom", usd_amount(s["budgetHeadroomUsdc"]), "headroom"),
            _tile("Utilization", pct_points(s["utilizationPct"], 1), "utilization"),
        ]
    return [
        *tiles,
        _tile("Realized PnL", usd_amount(s["realizedPnlUsdc"]), "realized-pnl"),
        _tile("Unrealized PnL", usd_amount(s["unrealizedPnlUsdc"]), "unrealized-pnl"),
        _tile("Reserved (open orders)", usd_amount(s["reservedUsdc"]), "reserved"),
        _tile("Open orders", f"{s['openOrders']:,}", "open-orders"),
    ]


def _table(table_id: str, head: list[str], rows: list[list[str]], empty: str) -> str:
    """A table whose first column is left-aligned text; cells are HTML already."""
    cols = "".join(f"<th{' class=l' if i == 0 else ''}>{e(h)}</th>" for i, h in enumerate(head))
    body = (
        "".join(
            "<tr>" + "".join(f"<td{' class=l' if i == 0 else ''}>{c}</td>" for i, c in enumerate(r)) + "</tr>"
            for r in rows
        )
        or f"<tr><td class='l' colspan='{len(head)}'>{e(empty)}</td></tr>"
    )
    return f"<table id='{table_id}'><thead><tr>{cols}</tr></thead><tbody>{body}</tbody></table>"


CELL_FORMATS: dict[str, Callable[[Any], str]] = {
    "text": lambda v: e("—" if v is None else v),
    "usd": usd,
    "price": lambda v: "—" if v is None else f"{v / MICROS:.4f}",
    "shares": lambda v: f"{v / MICROS:,.2f}",
    "time": when,
    "ratio": pct,
    "rate": lambda v: pct_points(v * 100, 4),
    "bps": lambda v: "—" if v is None else f"{v:+.0f} bps",
    "codes": lambda v: e(", ".join(v) or "—"),
    "int": lambda v: f"{v:,}",
}
"""How a cell of a column kind is shown (see :func:`columns`)."""


def columns(spec: str) -> list[tuple[str, str, str]]:
    """(header, field path, format) of each ``Header=field.path:format`` of a comma-separated `spec`."""
    out = []
    for part in spec.split(","):
        header, _, rest = part.strip().partition("=")
        path, _, kind = rest.partition(":")
        out.append((header, path, kind))
    return out


def _cell(item: dict[str, Any], path: str, kind: str) -> str:
    value: Any = item
    for name in path.split("."):
        value = value.get(name) if isinstance(value, dict) else None
    return CELL_FORMATS[kind](value)


def item_table(table_id: str, spec: str, items: list[dict[str, Any]], empty: str) -> str:
    """A table with one row per item and the columns of `spec` (:func:`columns`)."""
    cols = columns(spec)
    rows = [[_cell(item, path, kind) for _, path, kind in cols] for item in items]
    return _table(table_id, [header for header, _, _ in cols], rows, empty)


POSITIONS = (
    "Asset=assetId:text, Market=marketId:text, Shares=shareMicros:shares, Mark=markPriceMicros:price, "
    "Cost basis=costBasisMicros:usd, Value=valueMicros:usd, Unrealized=unrealizedPnlMicros:usd"
)
ORDERS = (
    "Asset=assetId:text, Side=side:text, Status=status:text, Closed by=closeReason:text, "
    "Opened=openedAtMs:time, Target=targetNotionalMicros:usd, Filled=filledNotionalMicros:usd, "
    "Fill ratio=fillRatio:ratio, "
    "Avg fill price=averageFillPriceMicros:price, Reference=referencePriceMicros:price, "
    "vs reference=priceVsReferenceBps:bps"
)
SETTLEMENTS = (
    "Asset=assetId:text, Market=marketId:text, Settled=settledAtMs:time, Shares=shareMicros:shares, "
    "Payout=payoutMicros:price, Proceeds=proceedsMicros:usd, Cost basis=costBasisMicros:usd, "
    "Realized PnL=realizedPnlMicros:usd"
)
ATTEMPTS = (
    "Decided=decidedAtMs:time, Decision=decision:text, Reasons=reasonCodes:codes, Side=side:text, "
    "Asset=assetId:text, Trades=bufferedTradeCount:int, Their notional=theirNotionalMicros:usd, "
    "Target=targetNotionalMicros:usd, r_u=sizing.rU:rate, "
    "Our exposure before=budget.currentExposureMicros:usd, Reserved before=budget.reservedMicros:usd"
)


def _venue_tables(detail: dict[str, Any]) -> str:
    return (
        "<h2>Positions</h2>"
        + item_table("positions", POSITIONS, detail["positions"], "no position held")
        + "<h2>Orders</h2><p class='note'>EXECUTEs decided under fillModel “reports”, newest first: fill "
        "ratio and average fill price against the attempt's reference price.</p>"
        + item_table("orders", ORDERS, detail["orders"], "no order")
        + "<h2>Settlements</h2>"
        + item_table("settlements", SETTLEMENTS, detail["settlements"], "no resolved market held")
    )


def _attempts_table(detail: dict[str, Any]) -> str:
    return item_table("recent-attempts", ATTEMPTS, detail["recentAttempts"], "no attempt")


def _counts_table(table_id: str, name: str, counts: dict[str, int]) -> str:
    return _table(table_id, [name, "Count"], [[e(k), f"{n:,}"] for k, n in counts.items()], "none")


def user_page(detail: dict[str, Any]) -> str:
    """``/users/{id}``: tiles (E_u, B_u, r_u, headroom and utilization when HARD, PnL, reserved, open
    orders), the exposure and PnL chart with mode changes, positions, orders, settlements, reasons."""
    s = detail["summary"]
    hard = s["budgetedDynamicActive"] and s["budgetEnforcement"] == "hard"
    mode = f"{s['sizingMode']}, {s['budgetEnforcement'].upper()}" + (
        "" if s["budgetedDynamicActive"] else " — Budgeted Dynamic not active (fixed rate)"
    )
    over = hard and (s["utilizationPct"] or 0) > 100
    note = (
        f"<p class='{'banner' if over else 'note'}' id='hard-note'>{e(HARD_NOTE)}</p>"
        if hard or detail["modeChanges"]
        else ""
    )
    body = (
        f"<p class='note'>{e(mode)} · r_min {pct_points(s['rMin'])}, r_max {pct_points(s['rMax'])} · "
        f"{s['executed']:,} executed, {s['skipped']:,} skipped, {s['trades']:,} trades · "
        f"<a href='/config?leader={quote(s['id'], safe='')}'>edit override</a></p>"
        f"<div class='tiles'>{''.join(_tiles(s, hard))}</div>"
        "<h2>Our exposure against the budget, and PnL</h2>"
        + exposure_chart(detail["exposureHistory"], detail["pnlHistory"], detail["modeChanges"])
        + note
        + _venue_tables(detail)
        + "<h2>Skip reasons</h2>"
        + _counts_table("skip-reasons", "Reason", detail["skipReasons"])
        + "<h2>Clamps</h2>"
        + _counts_table("clamps", "Clamp", detail["clamps"])
        + "<h2>Recent attempts</h2>"
        + _attempts_table(detail)
    )
    title = s["label"] if s["label"] == s["id"] else f"{s['label']} ({s['id']})"
    return layout(f"Leader {title}", body)


def not_found_page(leader: str) -> str:
    return layout("Leader not found", f"<p>No leader {e(leader)!s} has been projected yet.</p>")
