import { WINDOWS, type OverviewFigures, type Window } from '../../../ops/overview.js';
import { SAGA_STATUSES } from '../../../saga/state.js';
import { outcomeChart } from '../chart.js';
import { duration, isoTime } from '../format.js';
import { html, type Html } from '../html.js';
import { badge, liveControls } from '../layout.js';

/** Counts by status and type, finished sagas over time, dead letters waiting, the oldest running saga, the outbox backlog. */
export function overviewPage(f: OverviewFigures, window: Window, now: Date): Html {
  const byStatus = new Map(SAGA_STATUSES.map((s) => [s, 0]));
  const types = [...new Set(f.counts.map((c) => c.type))];
  for (const c of f.counts) byStatus.set(c.status, (byStatus.get(c.status) ?? 0) + c.n);
  const cell = (type: string, status: string) => f.counts.find((c) => c.type === type && c.status === status)?.n ?? 0;
  const waiting = f.deadLetters.reduce((n, d) => n + d.n, 0);
  return html`<h1>Overview</h1>
${liveControls()}
<div id="overview" data-live="5">
<section aria-labelledby="h-status">
<h2 id="h-status">Sagas by status</h2>
<div class="cards">
${SAGA_STATUSES.map((s) => html`<a class="card" href="/ui/sagas?status=${s}"><div class="big">${byStatus.get(s)}</div>${badge(s)}</a>`)}
</div>
</section>
<div class="cards">
<section class="card" aria-labelledby="h-dl"><h2 id="h-dl">Dead letters waiting</h2>
<div class="big"><a href="/ui/dead-letters?status=new">${waiting}</a></div>
${f.deadLetters.length ? html`<div class="scroll"><table><thead><tr><th>reason</th><th>consumer</th><th class="num">n</th></tr></thead><tbody>
${f.deadLetters.map((d) => html`<tr><td><a href="/ui/dead-letters?status=new&amp;reason=${encodeURIComponent(d.reasonCode)}">${d.reasonCode}</a></td><td>${d.consumer}</td><td class="num">${d.n}</td></tr>`)}
</tbody></table></div>` : html`<p class="muted">none</p>`}
</section>
<section class="card" aria-labelledby="h-old"><h2 id="h-old">Oldest running saga</h2>
${f.oldestRunning
    ? html`<p><a class="mono" href="/ui/sagas/${f.oldestRunning.id}">${f.oldestRunning.id}</a></p><p>${f.oldestRunning.type} ${badge(f.oldestRunning.status)}</p>
<p>started ${isoTime(f.oldestRunning.createdAt)}<br><strong>${duration(now.getTime() - f.oldestRunning.createdAt.getTime())}</strong> ago</p>`
    : html`<p class="muted">nothing running</p>`}
</section>
<section class="card" aria-labelledby="h-outbox"><h2 id="h-outbox">Outbox backlog</h2>
<div class="big">${f.outbox.pending}</div><p>messages waiting to be published${f.outbox.parked ? html`, <strong class="s-failed">${f.outbox.parked} parked</strong>` : ''}</p>
${f.outbox.oldestAt ? html`<p>oldest ${duration(Math.max(0, now.getTime() - f.outbox.oldestAt.getTime()))} old</p>` : ''}
</section>
</div>
<section aria-labelledby="h-chart">
<h2 id="h-chart">Finished sagas, last ${window}</h2>
<p>${Object.keys(WINDOWS).map((w) => (w === window ? html`<strong>${w}</strong> ` : html`<a href="/ui?window=${w}">${w}</a> `))}</p>
${outcomeChart(f.series, WINDOWS[window].bucket)}
</section>
<section aria-labelledby="h-types">
<h2 id="h-types">Sagas by type and status</h2>
<div class="scroll"><table><thead><tr><th>type</th>${SAGA_STATUSES.map((s) => html`<th class="num">${s}</th>`)}</tr></thead><tbody>
${types.map((t) => html`<tr><td><a href="/ui/sagas?type=${encodeURIComponent(t)}">${t}</a></td>${SAGA_STATUSES.map((s) => html`<td class="num">${cell(t, s) || ''}</td>`)}</tr>`)}
${types.length ? '' : html`<tr><td colspan="6" class="muted">no sagas yet</td></tr>`}
</tbody></table></div>
</section>
</div>`;
}
