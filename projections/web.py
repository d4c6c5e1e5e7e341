"""Server-rendered dashboard pages (plain HTML strings, a little inline JS; no front-end build).

Pure rendering: each function takes the same dicts the JSON API returns and gives an HTML page. Money is
shown in USD, rates in %. The config forms convert USD → micros and % → bps, validate in the browser
(seed 6.1: with the kill switch on and ``budgetedDynamic`` selected, B_u > 0 and r_min ≤ r_max), POST to
the JSON API, and show each error next to its field.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote

from models.units import MICROS, pct_points, usd, usd_amount

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
            f"<td>{pct_points(r['utilizationPct'], 1)}</td><td>{r['executed']:,} / {r['skipped']:,}</td></tr>"
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


def exposure_chart(history: list[dict[str, Any]], width: int = 760, height: int = 240) -> str:
    """Inline SVG: our exposure (line) against the budget in force (dashed), over decision time."""
    if not history:
        return "<p class='note'>No attempts yet.</p>"
    pad_l, pad_r, pad_t, pad_b = 64, 12, 10, 28
    t0, t1 = history[0]["t"], history[-1]["t"]
    top = (
        max(max(p["execExposureUsdc"] for p in history), max(p["budgetUsdc"] or 0 for p in history), 1e-9)
        * 1.1
    )
    span = max(t1 - t0, 1)

    def x(t: int) -> float:
        return float(pad_l + (t - t0) / span * (width - pad_l - pad_r))

    def y(v: float) -> float:
        return float(pad_t + (1 - v / top) * (height - pad_t - pad_b))

    ours = " ".join(f"{x(p['t']):.1f},{y(p['execExposureUsdc']):.1f}" for p in history)
    budget = []
    for i, p in enumerate(history):  # a step line: the budget holds until the next decision
        if i:
            budget.append(f"{x(p['t']):.1f},{y(history[i - 1]['budgetUsdc'] or 0):.1f}")
        budget.append(f"{x(p['t']):.1f},{y(p['budgetUsdc'] or 0):.1f}")
    return (
        f"<svg id='exposure-chart' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
        "role='img' aria-label='our exposure against the budget' "
        "style='background:#fff;border:1px solid #dde2e8'>"
        f"<line x1='{pad_l}' y1='{y(0):.1f}' x2='{width - pad_r}' y2='{y(0):.1f}' stroke='#aab'/>"
        f"<line x1='{pad_l}' y1='{pad_t}' x2='{pad_l}' y2='{y(0):.1f}' stroke='#aab'/>"
        f"<text x='{pad_l - 4}' y='{pad_t + 10}' text-anchor='end' font-size='11'>{e(usd_amount(top))}</text>"
        f"<text x='{pad_l - 4}' y='{y(0):.1f}' text-anchor='end' font-size='11'>$0</text>"
        f"<text x='{pad_l}' y='{height - 8}' font-size='11'>{e(when(t0))}</text>"
        f"<text x='{width - pad_r}' y='{height - 8}' text-anchor='end' font-size='11'>{e(when(t1))}</text>"
        f"<polyline points='{' '.join(budget)}' fill='none' stroke='#c0392b' stroke-dasharray='5,4'/>"
        f"<polyline points='{ours}' fill='none' stroke='#2463eb' stroke-width='1.6'/>"
        f"<text x='{width - pad_r}' y='{pad_t + 10}' text-anchor='end' font-size='11'>"
        "<tspan fill='#2463eb'>— our exposure</tspan> "
        "<tspan fill='#c0392b'>- - budget B_u</tspan></text></svg>"
    )


def user_page(detail: dict[str, Any]) -> str:
    """``/users/{id}``: tiles E_u, B_u, r_u (+ headroom, utilization when HARD), chart, attempts, reasons."""
    s = detail["summary"]
    hard = s["budgetedDynamicActive"] and s["budgetEnforcement"] == "hard"
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
    mode = f"{s['sizingMode']}, {s['budgetEnforcement'].upper()}" + (
        "" if s["budgetedDynamicActive"] else " — Budgeted Dynamic not active (fixed rate)"
    )
    attempts = [
        "<table id='recent-attempts'><thead><tr><th class='l'>Decided</th><th class='l'>Decision</th>"
        "<th class='l'>Reasons</th><th class='l'>Side</th><th class='l'>Asset</th><th>Trades</th>"
        "<th>Their notional</th><th>Target</th><th>r_u</th><th>Our exposure before</th></tr></thead><tbody>"
    ]
    for a in detail["recentAttempts"]:
        attempts.append(
            f"<tr><td class='l'>{when(a['decidedAtMs'])}</td><td class='l'>{e(a['decision'])}</td>"
            f"<td class='l'>{e(', '.join(a['reasonCodes']) or '—')}</td><td class='l'>{e(a['side'])}</td>"
            f"<td class='l'>{e(a['assetId'])}</td><td>{a['bufferedTradeCount']}</td>"
            f"<td>{usd(a['theirNotionalMicros'])}</td><td>{usd(a['targetNotionalMicros'])}</td>"
            f"<td>{pct_points(a['sizing']['rU'] * 100, 4)}</td>"
            f"<td>{usd(a['budget']['currentExposureMicros'])}</td></tr>"
        )
    attempts.append("</tbody></table>")
    reasons = (
        "".join(f"<tr><td class='l'>{e(k)}</td><td>{n:,}</td></tr>" for k, n in detail["skipReasons"].items())
        or "<tr><td class='l' colspan='2'>none</td></tr>"
    )
    clamps = "".join(
        f"<tr><td class='l'>{e(k)}</td><td>{n:,}</td></tr>" for k, n in detail["clamps"].items()
    ) or ("<tr><td class='l' colspan='2'>none</td></tr>")
    body = (
        f"<p class='note'>{e(mode)} · r_min {pct_points(s['rMin'])}, r_max {pct_points(s['rMax'])} · "
        f"{s['executed']:,} executed, {s['skipped']:,} skipped, {s['trades']:,} trades · "
        f"<a href='/config?leader={quote(s['id'], safe='')}'>edit override</a></p>"
        f"<div class='tiles'>{''.join(tiles)}</div>"
        "<h2>Our exposure against the budget</h2>"
        + exposure_chart(detail["exposureHistory"])
        + "<h2>Skip reasons</h2><table id='skip-reasons'><thead><tr><th class='l'>Reason</th>"
        "<th>Count</th></tr>"
        f"</thead><tbody>{reasons}</tbody></table>"
        "<h2>Clamps</h2><table id='clamps'><thead><tr><th class='l'>Clamp</th><th>Count</th></tr>"
        f"</thead><tbody>{clamps}</tbody></table>"
        f"<h2>Recent attempts</h2>{''.join(attempts)}"
    )
    title = s["label"] if s["label"] == s["id"] else f"{s['label']} ({s['id']})"
    return layout(f"Leader {title}", body)


def not_found_page(leader: str) -> str:
    return layout("Leader not found", f"<p>No leader {e(leader)!s} has been projected yet.</p>")
