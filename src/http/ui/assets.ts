/**
 * The dashboard's only two assets, shipped inside the package as strings (the build copies
 * TypeScript only, and a CDN is not an option for a console that must work without internet).
 * The script is plain ES2020 with no dependencies; the Content-Security-Policy allows scripts and
 * styles from this origin only, so nothing inline would run anyway.
 */
export const APP_JS = `'use strict';
// Confirmations: a form with data-confirm asks before it is sent.
document.addEventListener('submit', function (ev) {
  var form = ev.target;
  if (!(form instanceof HTMLFormElement)) return;
  var question = form.getAttribute('data-confirm');
  if (question && !window.confirm(question)) ev.preventDefault();
});

// Live refresh: every element with data-live and an id is replaced by its newer version from the
// same URL, unless the page is hidden, the operator is busy (below), or the box is unticked.
(function () {
  var live = document.querySelectorAll('[data-live][id]');
  if (live.length === 0) return;
  var toggle = document.getElementById('live-toggle');
  var stamp = document.getElementById('live-stamp');
  var seconds = Number(live[0].getAttribute('data-live')) || 5;
  // Busy: typing in a form, or keyboard focus inside a live region (replacing it would drop the focus).
  function busy() {
    var a = document.activeElement;
    if (!a || a === document.body || !a.closest) return false;
    if (a.closest('[data-live]')) return true;
    return !!a.closest('form') && a.tagName !== 'BUTTON' && a.id !== 'live-toggle';
  }
  function tick() {
    if (document.hidden || busy() || (toggle && !toggle.checked)) return;
    fetch(window.location.href, { credentials: 'same-origin', headers: { 'x-sagaflow-live': '1' } })
      .then(function (r) {
        if (r.redirected || !r.ok) throw new Error('refresh answered ' + r.status);
        return r.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, 'text/html');
        document.querySelectorAll('[data-live][id]').forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh) el.replaceWith(document.importNode(fresh, true));
        });
        if (stamp) stamp.textContent = 'refreshed ' + new Date().toLocaleTimeString();
      })
      .catch(function (err) {
        if (stamp) stamp.textContent = 'refresh failed: ' + err.message;
      });
  }
  window.setInterval(tick, seconds * 1000);
})();
`;

export const APP_CSS = `:root {
  --bg: #f6f7f9; --fg: #1c2330; --muted: #5b6575; --line: #d7dce3; --card: #fff;
  --ok: #1f7a3d; --comp: #8a5a00; --fail: #b3261e; --run: #1d5fb8; --focus: #ffbf47;
}
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--fg); }
a { color: #1a56a8; }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
.skip { position: absolute; left: -999px; }
.skip:focus { left: 8px; top: 8px; background: #fff; padding: 6px 10px; z-index: 10; }
header.top { display: flex; flex-wrap: wrap; gap: 12px 24px; align-items: center; padding: 10px 20px; background: #1c2330; color: #fff; }
header.top a { color: #fff; text-decoration: none; }
header.top nav a { padding: 4px 8px; border-radius: 4px; }
header.top nav a[aria-current="page"] { background: #3a4760; }
header.top .who { margin-left: auto; display: flex; gap: 10px; align-items: center; font-size: 14px; }
header.top .who button { background: transparent; color: #fff; border: 1px solid #8895aa; }
.brand { font-weight: 700; letter-spacing: .02em; }
main { padding: 16px 20px 40px; max-width: 1400px; margin: 0 auto; }
h1 { font-size: 22px; margin: 6px 0 14px; }
h2 { font-size: 17px; margin: 22px 0 8px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(220px, 1fr)); gap: 12px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.card .big { font-size: 26px; font-weight: 700; }
.muted { color: var(--muted); }
table { border-collapse: collapse; width: 100%; background: var(--card); border: 1px solid var(--line); }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #eef1f5; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
pre { background: #10151f; color: #e6e9ef; padding: 10px 12px; border-radius: 6px; overflow: auto; max-height: 480px; white-space: pre; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; border: 1px solid currentColor; white-space: nowrap; }
.s-completed, .s-succeeded { color: var(--ok); }
.s-compensated, .s-compensating { color: var(--comp); }
.s-failed, .s-timed_out { color: var(--fail); }
.s-running { color: var(--run); }
.s-cancelled, .s-new, .s-redriven, .s-discarded { color: var(--muted); }
form.filters { display: flex; flex-wrap: wrap; gap: 10px 14px; align-items: flex-end; margin-bottom: 12px; }
label { display: flex; flex-direction: column; gap: 3px; font-size: 13px; color: var(--muted); }
label.inline { flex-direction: row; align-items: center; gap: 6px; color: var(--fg); }
input, select, textarea, button { font: inherit; padding: 6px 8px; border: 1px solid #9aa4b3; border-radius: 5px; background: #fff; color: var(--fg); }
button { cursor: pointer; background: #e9edf3; }
button.primary { background: #1d5fb8; color: #fff; border-color: #1d5fb8; }
button.danger { background: var(--fail); color: #fff; border-color: var(--fail); }
.actions { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 12px; }
.actions form { display: flex; flex-direction: column; gap: 8px; }
.actions form button { align-self: flex-start; }
.card table { font-size: 13px; }
.flash { padding: 10px 12px; border-radius: 6px; margin: 8px 0 14px; border: 1px solid; }
.flash.ok { background: #e8f5ec; border-color: var(--ok); }
.flash.err { background: #fdecea; border-color: var(--fail); }
.lanes { display: grid; gap: 6px; margin: 8px 0 16px; }
.lane { display: flex; flex-wrap: wrap; gap: 6px; align-items: stretch; }
.lane .label { width: 110px; font-size: 13px; color: var(--muted); align-self: center; }
.box { min-width: 140px; padding: 6px 10px; border-radius: 6px; border: 2px solid var(--line); background: var(--card); font-size: 13px; }
.box strong { display: block; font-size: 14px; }
.box.st-succeeded { border-color: var(--ok); }
.box.st-failed, .box.st-timed_out { border-color: var(--fail); background: #fdecea; }
.box.st-running { border-color: var(--run); }
.box.st-pending { border-style: dashed; color: var(--muted); }
.box.failpoint { box-shadow: 0 0 0 3px #f3b2ac; }
.arrow { align-self: center; color: var(--muted); }
tr.phase-compensation td:first-child { border-left: 4px solid var(--comp); }
tr.phase-forward td:first-child { border-left: 4px solid var(--run); }
tr.failpoint { background: #fdecea; }
.err { color: var(--fail); white-space: pre-wrap; }
.kv { display: grid; grid-template-columns: max-content 1fr; gap: 4px 14px; }
.kv dt { color: var(--muted); }
.kv dd { margin: 0; overflow-wrap: anywhere; }
.pager { margin-top: 10px; display: flex; gap: 12px; align-items: center; }
.chart svg { display: block; width: 100%; height: auto; background: var(--card); border: 1px solid var(--line); border-radius: 8px; }
.legend { display: flex; gap: 14px; font-size: 13px; margin: 4px 0; }
.legend span::before { content: ""; display: inline-block; width: 10px; height: 10px; margin-right: 5px; background: currentColor; }
.login { max-width: 420px; margin: 60px auto; }
.login form { display: flex; flex-direction: column; gap: 10px; }
@media (max-width: 700px) {
  main { padding: 10px; }
  header.top .who { margin-left: 0; }
  th, td { padding: 5px; }
  .lane .label { width: 100%; }
  .hide-narrow { display: none; }
}
`;
