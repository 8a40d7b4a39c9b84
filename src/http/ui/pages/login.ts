import { html, type Html } from '../html.js';
import { bare } from '../layout.js';

/** The sign-in form: the token goes in a password field, is checked once, and is never echoed back. */
export function loginPage(message?: string): Html {
  return bare(
    'Sign in',
    html`<div class="login card">
<h1>sagaflow dashboard</h1>
${message ? html`<div class="flash err" role="alert">${message}</div>` : ''}
<form method="post" action="/ui/login">
<label>Admin API token<input type="password" name="token" required autocomplete="current-password" maxlength="4096" autofocus></label>
<button type="submit" class="primary">Sign in</button>
</form>
<p class="muted">Same tokens and roles as the admin API (SAGAFLOW_ADMIN_TOKENS). A read token can look; an admin token can also act.</p>
</div>`,
  );
}

export function errorPage(status: number, code: string, message: string, requestId: string, signedIn: boolean): Html {
  return bare(
    `${status} ${code}`,
    html`<div class="card"><h1>${status} ${code}</h1><p>${message}</p><p class="muted">request id <span class="mono">${requestId}</span></p>
<p>${signedIn ? html`<a href="/ui">Back to the overview</a>` : html`<a href="/ui/login">Sign in</a>`}</p></div>`,
  );
}
