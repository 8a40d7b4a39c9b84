import type { OutcomeBucket } from '../../ops/overview.js';
import { isoTime } from './format.js';
import { html, type Html } from './html.js';

const COLOURS = { completed: '#1f7a3d', compensated: '#c98a00', failed: '#b3261e' } as const;
const W = 1000;
const H = 220;
const PAD = { left: 40, right: 10, top: 12, bottom: 30 };

/**
 * Finished sagas per time bucket as stacked bars, drawn on the server as SVG: no chart library,
 * nothing for the CSP to allow, and the figure is in the page as soon as it loads. Each bar has a
 * <title> (a tooltip and a screen-reader label); the totals are also said in the aria-label.
 */
export function outcomeChart(series: readonly OutcomeBucket[], bucketLabel: string): Html {
  const max = Math.max(1, ...series.map((b) => b.completed + b.compensated + b.failed));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const step = plotW / Math.max(1, series.length);
  const barW = Math.max(1, step * 0.8);
  const total = (k: keyof typeof COLOURS) => series.reduce((n, b) => n + b[k], 0);
  const y = (v: number) => (v / max) * plotH;
  const bars = series.map((b, i) => {
    const x = PAD.left + i * step + (step - barW) / 2;
    let top = PAD.top + plotH;
    const parts = (['completed', 'compensated', 'failed'] as const).map((k) => {
      const h = y(b[k]);
      top -= h;
      return h > 0 ? html`<rect x="${x.toFixed(1)}" y="${top.toFixed(1)}" width="${barW.toFixed(1)}" height="${h.toFixed(1)}" fill="${COLOURS[k]}"></rect>` : '';
    });
    return html`<g><title>${isoTime(b.at)}: ${b.completed} completed, ${b.compensated} compensated, ${b.failed} failed</title>${parts}</g>`;
  });
  const first = series[0];
  const last = series.at(-1);
  const label = `Finished sagas per ${bucketLabel}: ${total('completed')} completed, ${total('compensated')} compensated, ${total('failed')} failed`;
  return html`<div class="chart">
<div class="legend"><span class="s-completed">completed</span><span class="s-compensated">compensated</span><span class="s-failed">failed</span></div>
<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${label}" xmlns="http://www.w3.org/2000/svg">
<line x1="${PAD.left}" y1="${PAD.top + plotH}" x2="${W - PAD.right}" y2="${PAD.top + plotH}" stroke="#9aa4b3"></line>
<line x1="${PAD.left}" y1="${PAD.top}" x2="${PAD.left}" y2="${PAD.top + plotH}" stroke="#9aa4b3"></line>
<text x="${PAD.left - 6}" y="${PAD.top + 10}" text-anchor="end" font-size="11" fill="#5b6575">${max}</text>
<text x="${PAD.left - 6}" y="${PAD.top + plotH}" text-anchor="end" font-size="11" fill="#5b6575">0</text>
${bars}
${first ? html`<text x="${PAD.left}" y="${H - 8}" font-size="11" fill="#5b6575">${isoTime(first.at)}</text>` : ''}
${last ? html`<text x="${W - PAD.right}" y="${H - 8}" text-anchor="end" font-size="11" fill="#5b6575">${isoTime(last.at)}</text>` : ''}
</svg>
</div>`;
}
