import type { SagaStatus } from '../../../saga/state.js';
import { SAGA_STATUSES } from '../../../saga/state.js';
import type { SagaSummary } from '../../../saga/store.js';
import { isoTime } from '../format.js';
import { html, type Html } from '../html.js';
import { badge, liveControls } from '../layout.js';

export interface SagaListQuery {
  readonly status?: SagaStatus | undefined;
  readonly type?: string | undefined;
  readonly since?: string | undefined;
  readonly q?: string | undefined;
}

/** Filters, the page of sagas (newest first) and a link to the next page (keyset cursor). */
export function sagaListPage(query: SagaListQuery, types: readonly string[], rows: readonly SagaSummary[], nextCursor: string | null): Html {
  const keep = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v) keep.set(k, v);
  const next = nextCursor ? `/ui/sagas?${new URLSearchParams([...keep, ['cursor', nextCursor]]).toString()}` : null;
  return html`<h1>Sagas</h1>
<form class="filters" method="get" action="/ui/sagas" role="search">
<label>Search (saga id or correlation id)<input type="search" name="q" value="${query.q ?? ''}" size="38" autocomplete="off"></label>
<label>Status<select name="status"><option value="">any</option>${SAGA_STATUSES.map((s) => html`<option${s === query.status ? html` selected` : ''}>${s}</option>`)}</select></label>
<label>Type<select name="type"><option value="">any</option>${types.map((t) => html`<option${t === query.type ? html` selected` : ''}>${t}</option>`)}</select></label>
<label>Created since<input name="since" value="${query.since ?? ''}" placeholder="1h, 7d or ISO time" size="16"></label>
<button type="submit" class="primary">Filter</button> <a href="/ui/sagas">clear</a>
</form>
${liveControls()}
<div id="saga-list" data-live="5" class="scroll">
<table><caption class="muted">${rows.length} saga(s) on this page, newest first</caption>
<thead><tr><th>saga</th><th>type</th><th>status</th><th class="hide-narrow">reason</th><th>created</th><th class="hide-narrow">finished</th></tr></thead>
<tbody>
${rows.map((s) => html`<tr><td><a class="mono" href="/ui/sagas/${s.id}">${s.id}</a></td><td>${s.type}</td><td>${badge(s.status)}</td><td class="hide-narrow">${s.reason ?? ''}</td><td>${isoTime(s.createdAt)}</td><td class="hide-narrow">${isoTime(s.finishedAt)}</td></tr>`)}
${rows.length ? '' : html`<tr><td colspan="6" class="muted">no saga matches</td></tr>`}
</tbody></table>
</div>
<nav class="pager" aria-label="Pages">${next ? html`<a href="${next}" rel="next">Next page →</a>` : html`<span class="muted">last page</span>`}</nav>`;
}
