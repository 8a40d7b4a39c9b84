import type { AuditRow } from '../../../ops/audit.js';
import type { DeadLetter, DeadLetterDetail, DeadLetterStatus } from '../../../ops/dead-letter-ops.js';
import { redact } from '../../redact.js';
import { BODY_LIMIT, isoTime, showBody } from '../format.js';
import { html, type Html } from '../html.js';
import { badge, csrfField, isAdmin, liveControls, type Viewer } from '../layout.js';
import { auditTable } from './saga-detail.js';

export interface DeadLetterQuery {
  readonly status?: DeadLetterStatus | undefined;
  readonly consumer?: string | undefined;
  readonly reason?: string | undefined;
}

const STATUSES: readonly DeadLetterStatus[] = ['new', 'redriven', 'discarded'];

export function deadLetterListPage(
  query: DeadLetterQuery,
  groups: readonly { reasonCode: string; consumer: string; n: number }[],
  rows: readonly DeadLetter[],
  nextCursor: string | null,
): Html {
  const keep = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v) keep.set(k, v);
  const next = nextCursor ? `/ui/dead-letters?${new URLSearchParams([...keep, ['cursor', nextCursor]]).toString()}` : null;
  const link = (reason: string, consumer: string) => `/ui/dead-letters?${new URLSearchParams({ status: 'new', reason, consumer }).toString()}`;
  return html`<h1>Dead letters</h1>
<section aria-labelledby="h-groups"><h2 id="h-groups">Waiting, by reason and consumer</h2>
${groups.length
    ? html`<table><thead><tr><th>reason</th><th>consumer</th><th class="num">waiting</th></tr></thead><tbody>
${groups.map((g) => html`<tr><td><a href="${link(g.reasonCode, g.consumer)}">${g.reasonCode}</a></td><td>${g.consumer}</td><td class="num">${g.n}</td></tr>`)}
</tbody></table>`
    : html`<p class="muted">no dead letter is waiting</p>`}
</section>
<h2>List</h2>
<form class="filters" method="get" action="/ui/dead-letters">
<label>Status<select name="status"><option value="">any</option>${STATUSES.map((s) => html`<option${s === query.status ? html` selected` : ''}>${s}</option>`)}</select></label>
<label>Consumer<input name="consumer" value="${query.consumer ?? ''}"></label>
<label>Reason<input name="reason" value="${query.reason ?? ''}"></label>
<button type="submit" class="primary">Filter</button> <a href="/ui/dead-letters">clear</a>
</form>
${liveControls()}
<div id="dl-list" data-live="5" class="scroll"><table>
<thead><tr><th>id</th><th>type</th><th>consumer</th><th>reason</th><th>status</th><th class="hide-narrow">error</th><th class="num">seen</th><th>last seen</th></tr></thead>
<tbody>
${rows.map((d) => html`<tr><td><a href="/ui/dead-letters/${d.id}">#${d.id}</a></td><td>${d.type ?? ''}</td><td>${d.consumer}</td><td>${d.reasonCode}</td><td>${badge(d.status)}</td><td class="hide-narrow err">${(d.error ?? '').slice(0, 200)}</td><td class="num">${d.timesSeen}</td><td>${isoTime(d.lastSeenAt)}</td></tr>`)}
${rows.length ? '' : html`<tr><td colspan="8" class="muted">no dead letter matches</td></tr>`}
</tbody></table></div>
<nav class="pager" aria-label="Pages">${next ? html`<a href="${next}" rel="next">Next page →</a>` : html`<span class="muted">last page</span>`}</nav>`;
}

export function deadLetterPage(viewer: Viewer, d: DeadLetterDetail, audit: readonly AuditRow[]): Html {
  const body = showBody(d.body, d.bodyEncoding);
  const headers = Object.entries(redact(d.headers ?? {}));
  return html`<h1>Dead letter #${d.id}</h1>
<dl class="kv" id="dead-letter">
<dt>status</dt><dd>${badge(d.status)}${d.resolvedBy ? html` by ${d.resolvedBy} at ${isoTime(d.resolvedAt)}${d.resolutionNote ? html` — ${d.resolutionNote}` : ''}` : ''}</dd>
<dt>reason</dt><dd>${d.reasonCode}</dd>
<dt>error</dt><dd class="err">${d.error ?? ''}</dd>
<dt>consumer</dt><dd>${d.consumer}</dd>
<dt>topic</dt><dd>${d.topic}</dd>
<dt>message</dt><dd>${d.type ?? 'unknown type'} <span class="mono">${d.messageId}</span></dd>
<dt>key</dt><dd class="mono">${d.key ?? ''}</dd>
<dt>attempts</dt><dd>${d.attempts ?? ''} (seen ${d.timesSeen} time(s), first ${isoTime(d.firstSeenAt)}, last ${isoTime(d.lastSeenAt)})</dd>
</dl>
${isAdmin(viewer) ? actions(viewer, d) : ''}
<h2>Body <span class="muted">(${body.kind === 'hex' ? 'binary, hex dump' : body.kind === 'json' ? 'JSON' : 'text'})</span></h2>
<pre id="dl-body">${body.text}</pre>
${body.cut ? html`<p class="muted">cut at ${BODY_LIMIT / 1024} KiB for the page; <code>sagaflow dead-letters show</code> prints it whole</p>` : ''}
<h2>Headers</h2>
<table><thead><tr><th>name</th><th>value</th></tr></thead><tbody>
${headers.map(([k, v]) => html`<tr><td class="mono">${k}</td><td class="mono">${typeof v === 'string' ? v : JSON.stringify(v)}</td></tr>`)}
</tbody></table>
<h2>Audit trail</h2>
${auditTable(audit)}`;
}

function actions(viewer: Viewer, d: DeadLetterDetail): Html {
  return html`<section aria-labelledby="h-actions"><h2 id="h-actions">Actions</h2><div class="actions">
<form method="post" action="/ui/dead-letters/${d.id}/redrive" class="card" id="redrive-form" data-confirm="Publish dead letter #${d.id} again to ${d.topic}?">
${csrfField(viewer)}
<strong>Redrive</strong><span class="muted">publishes the message again to ${d.topic}</span>
<label class="inline"><input type="checkbox" name="newId" value="1"> with a new message id (consumers will process it as new)</label>
${d.status !== 'new' ? html`<label class="inline"><input type="checkbox" name="force" value="1"> force (it was ${d.status} already)</label>` : ''}
<label>Reason (kept in the audit trail)<input name="reason" required maxlength="1000"></label>
<button type="submit" class="primary">Redrive</button>
</form>
${d.status !== 'discarded'
    ? html`<form method="post" action="/ui/dead-letters/${d.id}/discard" class="card" id="discard-form" data-confirm="Discard dead letter #${d.id}? It will not be processed.">
${csrfField(viewer)}
<strong>Discard</strong><span class="muted">keeps the row, marks it handled</span>
<label>Reason (kept in the audit trail)<input name="reason" required maxlength="1000"></label>
<button type="submit" class="danger">Discard</button>
</form>`
    : ''}
</div></section>`;
}
