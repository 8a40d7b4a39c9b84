import type { Principal } from '../auth.js';
import { html, type Html, type Renderable } from './html.js';

/** What every page needs to know about the viewer: who (name and role, never the token) and the form token. */
export interface Viewer {
  readonly principal: Principal;
  readonly csrf: string;
}

export interface Flash {
  readonly kind: 'ok' | 'err';
  readonly text: string;
}

export type NavItem = 'overview' | 'sagas' | 'dead-letters';

const NAV: readonly { readonly id: NavItem; readonly href: string; readonly label: string }[] = [
  { id: 'overview', href: '/ui', label: 'Overview' },
  { id: 'sagas', href: '/ui/sagas', label: 'Sagas' },
  { id: 'dead-letters', href: '/ui/dead-letters', label: 'Dead letters' },
];

export function csrfField(viewer: Viewer): Html {
  return html`<input type="hidden" name="_csrf" value="${viewer.csrf}">`;
}

export function isAdmin(viewer: Viewer): boolean {
  return viewer.principal.role === 'admin';
}

function document_(title: string, body: Renderable): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${title} · sagaflow</title>
<link rel="stylesheet" href="/ui/assets/app.css">
<script src="/ui/assets/app.js" defer></script>
</head>
<body>
${body}
</body>
</html>`;
}

export function page(viewer: Viewer, opts: { title: string; nav?: NavItem; flash?: Flash | undefined }, content: Renderable): Html {
  return document_(
    opts.title,
    html`<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <a class="brand" href="/ui">sagaflow</a>
  <nav aria-label="Main">${NAV.map((n) => html`<a href="${n.href}"${n.id === opts.nav ? html` aria-current="page"` : ''}>${n.label}</a> `)}</nav>
  <div class="who">
    <span>signed in as <strong>${viewer.principal.name}</strong> (${viewer.principal.role})</span>
    <form method="post" action="/ui/logout">${csrfField(viewer)}<button type="submit">Log out</button></form>
  </div>
</header>
<main id="main">
${opts.flash ? html`<div class="flash ${opts.flash.kind}" role="status">${opts.flash.text}</div>` : ''}
${content}
</main>`,
  );
}

/** A page for someone not signed in: the login form and error answers before a session exists. */
export function bare(title: string, content: Renderable): Html {
  return document_(title, html`<main id="main">${content}</main>`);
}

export function badge(status: string): Html {
  return html`<span class="badge s-${status}">${status}</span>`;
}

/** A live region: its content is re-fetched every few seconds by app.js. */
export function liveControls(): Html {
  return html`<p class="muted"><label class="inline"><input type="checkbox" id="live-toggle" checked> live refresh</label> <span id="live-stamp" aria-live="polite"></span></p>`;
}
