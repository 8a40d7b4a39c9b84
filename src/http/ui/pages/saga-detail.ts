import type { AuditRow } from '../../../ops/audit.js';
import type { Plan } from '../../../ops/saga-ops.js';
import type { SagaDefinition } from '../../../saga/definition.js';
import type { SagaInstance } from '../../../saga/state.js';
import type { SagaTimes, StepHistoryRow } from '../../../saga/store.js';
import { between, isoTime, prettyJson } from '../format.js';
import { html, type Html } from '../html.js';
import { badge, csrfField, isAdmin, type Viewer } from '../layout.js';

type Saga = SagaInstance & SagaTimes;

interface FailPoint {
  readonly step: string;
  readonly phase: 'forward' | 'compensation';
}

const FAILED = new Set(['failed', 'timed_out']);
const phaseOf = (row: StepHistoryRow): 'forward' | 'compensation' => (row.kind === 'compensation' ? 'compensation' : 'forward');

/**
 * Where the saga went wrong: where a failed saga stopped (kept by the engine for replay), or, for
 * a saga that compensated, the forward step whose failure started the compensation.
 */
export function failPoint(saga: Saga, steps: readonly StepHistoryRow[]): FailPoint | null {
  if (saga.state.failedAt) return saga.state.failedAt;
  if (saga.status !== 'compensating' && saga.status !== 'compensated') return null;
  const firstComp = steps.findIndex((r) => r.kind === 'compensation');
  const before = firstComp === -1 ? steps : steps.slice(0, firstComp);
  const last = [...before].reverse().find((r) => FAILED.has(r.status));
  return last ? { step: last.step, phase: 'forward' } : null;
}

function lastAttempt(steps: readonly StepHistoryRow[], step: string, phase: 'forward' | 'compensation'): StepHistoryRow | undefined {
  return [...steps].reverse().find((r) => r.step === step && phaseOf(r) === phase);
}

/** The step strip: forward steps left to right, compensations under them right to left, the failure point ringed. */
function lanes(def: SagaDefinition | undefined, steps: readonly StepHistoryRow[], fp: FailPoint | null): Html {
  const names = def ? def.steps.map((s) => s.name) : [...new Set(steps.map((r) => r.step))];
  const box = (step: string, phase: 'forward' | 'compensation') => {
    const row = lastAttempt(steps, step, phase);
    const st = row?.status ?? 'pending';
    const here = fp?.step === step && fp.phase === phase;
    return html`<div class="box st-${st}${here ? ' failpoint' : ''}"><strong>${step}</strong>${badge(st)}${row ? html` <span class="muted">attempt ${row.attempt}</span>` : ''}${here ? html`<br><span class="s-failed">✖ failed here</span>` : ''}</div>`;
  };
  const compensated = names.filter((n) => steps.some((r) => r.step === n && r.kind === 'compensation')).reverse();
  return html`<div class="lanes" aria-label="Step timeline">
<div class="lane"><span class="label">forward →</span>${names.map((n, i) => html`${i ? html`<span class="arrow" aria-hidden="true">→</span>` : ''}${box(n, 'forward')}`)}</div>
${compensated.length ? html`<div class="lane"><span class="label">← compensation</span>${compensated.map((n, i) => html`${i ? html`<span class="arrow" aria-hidden="true">←</span>` : ''}${box(n, 'compensation')}`)}</div>` : ''}
</div>`;
}

function attempts(steps: readonly StepHistoryRow[], fp: FailPoint | null): Html {
  const failRow = fp ? lastAttempt(steps, fp.step, fp.phase) : undefined;
  return html`<div class="scroll"><table id="attempts">
<caption class="muted">Every attempt, in the order it started</caption>
<thead><tr><th>#</th><th>phase</th><th>step</th><th>attempt</th><th>outcome</th><th>started</th><th>finished</th><th>took</th><th>command</th><th>reply</th><th>error</th></tr></thead>
<tbody>
${steps.map((r) => {
    const kept = r.kept === null || r.kept === undefined ? null : prettyJson(r.kept).text;
    return html`<tr class="phase-${phaseOf(r)}${r === failRow ? ' failpoint' : ''}">
<td>${r.seq}</td><td>${r.kind}</td><td>${r.step}</td><td>${r.attempt}</td><td>${badge(r.status)}</td>
<td>${isoTime(r.startedAt)}</td><td>${isoTime(r.finishedAt)}</td><td>${between(r.startedAt, r.finishedAt)}</td>
<td>${r.commandType ?? ''}${r.commandId ? html`<br><span class="mono">${r.commandId}</span>` : ''}</td>
<td>${r.replyType ?? ''}${r.replyId ? html`<br><span class="mono">${r.replyId}</span>` : ''}</td>
<td>${r.error ? html`<span class="err">${r.error}</span>` : ''}${kept ? html`<details><summary>kept for compensation</summary><pre>${kept}</pre></details>` : ''}</td>
</tr>`;
  })}
${steps.length ? '' : html`<tr><td colspan="11" class="muted">no step has started</td></tr>`}
</tbody></table></div>`;
}

export function auditTable(rows: readonly AuditRow[]): Html {
  if (rows.length === 0) return html`<p class="muted">no operator action yet</p>`;
  return html`<div class="scroll"><table><thead><tr><th>at</th><th>actor</th><th>action</th><th>outcome</th><th>reason</th><th class="hide-narrow">detail</th></tr></thead><tbody>
${rows.map((a) => html`<tr><td>${isoTime(a.at)}</td><td>${a.actor}</td><td>${a.action}</td><td>${a.outcome}</td><td>${a.reason ?? ''}</td><td class="hide-narrow"><details><summary>detail</summary><pre>${prettyJson(a.detail).text}</pre></details></td></tr>`)}
</tbody></table></div>`;
}

function actions(viewer: Viewer, saga: Saga, def: SagaDefinition | undefined): Html {
  if (!isAdmin(viewer)) return html``;
  // The engine replays only failed sagas and cancels only running ones: other forms would only be refused.
  const running = saga.status === 'running';
  if (saga.status !== 'failed' && !running) return html``;
  return html`<section aria-labelledby="h-actions"><h2 id="h-actions">Actions</h2><div class="actions">
${saga.status === 'failed'
    ? html`<form method="post" action="/ui/sagas/${saga.id}/replay/plan" class="card" id="replay-form">
${csrfField(viewer)}
<strong>Replay</strong>
<label>From step<select name="fromStep"><option value="">where it stopped</option>${(def?.steps ?? []).map((s) => html`<option>${s.name}</option>`)}</select></label>
<label class="inline"><input type="checkbox" name="force" value="1"> force (run steps that already succeeded again)</label>
<label>Reason (kept in the audit trail)<input name="reason" required maxlength="1000"></label>
<button type="submit" class="primary">Show replay plan</button>
</form>`
    : ''}
${running
    ? html`<form method="post" action="/ui/sagas/${saga.id}/cancel/plan" class="card" id="cancel-form">
${csrfField(viewer)}
<strong>Cancel</strong><span class="muted">compensates the steps that succeeded</span>
<label>Reason (kept in the audit trail)<input name="reason" required maxlength="1000"></label>
<button type="submit" class="danger">Show cancel plan</button>
</form>`
    : ''}
</div></section>`;
}

export function sagaDetailPage(viewer: Viewer, saga: Saga, def: SagaDefinition | undefined, steps: readonly StepHistoryRow[], audit: readonly AuditRow[]): Html {
  const fp = failPoint(saga, steps);
  const failRow = fp ? lastAttempt(steps, fp.step, fp.phase) : undefined;
  const data = prettyJson(saga.data);
  return html`<h1>Saga <span class="mono">${saga.id}</span></h1>
<div id="saga" data-live="5">
<dl class="kv">
<dt>type</dt><dd>${saga.type} (definition v${saga.definitionVersion})</dd>
<dt>status</dt><dd id="saga-status">${badge(saga.status)}</dd>
${saga.reason ? html`<dt>reason</dt><dd class="err">${saga.reason}</dd>` : ''}
<dt>correlation id</dt><dd class="mono">${saga.state.correlationId}</dd>
<dt>tenant</dt><dd>${saga.tenantId}</dd>
<dt>created</dt><dd>${isoTime(saga.createdAt)}</dd>
<dt>updated</dt><dd>${isoTime(saga.updatedAt)}</dd>
${saga.finishedAt ? html`<dt>finished</dt><dd>${isoTime(saga.finishedAt)} (took ${between(saga.createdAt, saga.finishedAt)})</dd>` : ''}
${saga.wakeAt ? html`<dt>next timer</dt><dd>${isoTime(saga.wakeAt)}</dd>` : ''}
<dt>version</dt><dd>${saga.version}</dd>
</dl>
${fp ? html`<div class="flash err" id="failure"><strong>Failed at ${fp.step} (${fp.phase})</strong>${failRow?.error ? html`: <span class="err">${failRow.error}</span>` : ''}</div>` : ''}
<h2>Step timeline</h2>
${lanes(def, steps, fp)}
${attempts(steps, fp)}
</div>
${actions(viewer, saga, def)}
<h2>Saga data</h2>
<pre>${data.text}</pre>${data.cut ? html`<p class="muted">cut at 64 KiB; <code>sagaflow sagas show</code> prints it whole</p>` : ''}
<h2>Audit trail</h2>
${auditTable(audit)}`;
}

/** The dry run's plan, with the form that carries the same choices (and a one-use key) to the real action. */
export function planPage(viewer: Viewer, action: 'replay' | 'cancel', plan: Plan, choice: { fromStep?: string | undefined; force?: boolean | undefined; reason: string }, key: string): Html {
  const commands = plan.commands.map((c) => ({ ...c, payload: prettyJson(c.payload).text }));
  return html`<h1>${action === 'replay' ? 'Replay' : 'Cancel'} saga <span class="mono">${plan.sagaId}</span>: plan</h1>
<p>This is what the ${action} will do (a dry run: nothing has changed yet).</p>
<dl class="kv" id="plan">
<dt>saga type</dt><dd>${plan.sagaType}</dd>
<dt>status</dt><dd>${badge(plan.from)} → ${badge(plan.to)}</dd>
<dt>resumes at</dt><dd>${plan.resumeAt ? `${plan.resumeAt.step} (${plan.resumeAt.phase})` : 'nothing to resume'}</dd>
${plan.rerunSucceeded.length ? html`<dt>runs again</dt><dd class="s-failed">${plan.rerunSucceeded.join(', ')} (already succeeded once)</dd>` : ''}
${plan.localStep ? html`<dt>local step</dt><dd>${plan.localStep} (runs in the worker)</dd>` : ''}
<dt>reason</dt><dd>${choice.reason}</dd>
</dl>
<h2>Commands it sends</h2>
${commands.length
    ? html`<table><thead><tr><th>type</th><th>topic</th><th>step</th><th>phase</th><th>payload</th></tr></thead><tbody>
${commands.map((c) => html`<tr><td>${c.type}</td><td>${c.topic}</td><td>${c.step ?? ''}</td><td>${c.phase ?? ''}</td><td><pre>${c.payload}</pre></td></tr>`)}
</tbody></table>`
    : html`<p class="muted">none</p>`}
<form method="post" action="/ui/sagas/${plan.sagaId}/${action}" class="card" id="confirm-form">
${csrfField(viewer)}
<input type="hidden" name="key" value="${key}">
<input type="hidden" name="reason" value="${choice.reason}">
${choice.fromStep ? html`<input type="hidden" name="fromStep" value="${choice.fromStep}">` : ''}
${choice.force ? html`<input type="hidden" name="force" value="1">` : ''}
<p><button type="submit" class="${action === 'cancel' ? 'danger' : 'primary'}">Confirm ${action}</button> <a href="/ui/sagas/${plan.sagaId}">back without changing anything</a></p>
</form>`;
}
