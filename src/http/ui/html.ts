/**
 * A tiny HTML template that escapes by default: every interpolated value is text unless it is
 * already `Html` (the result of another `html` template or of `raw`, which only this module's
 * callers use for markup they built themselves). Arrays are joined, null/undefined/false render
 * nothing. Nothing a database row, a message body or a query string holds can become markup.
 */
export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

export type Renderable = Html | string | number | bigint | boolean | null | undefined | Date | readonly Renderable[];

function render(v: Renderable): string {
  if (v === null || v === undefined || v === false) return '';
  if (v instanceof Html) return v.value;
  if (Array.isArray(v)) return v.map((x: Renderable) => render(x)).join('');
  if (v instanceof Date) return escapeHtml(v.toISOString());
  return escapeHtml(String(v));
}

export function html(strings: TemplateStringsArray, ...values: Renderable[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]!) + strings[i + 1]!;
  return new Html(out);
}

/** Markup this code built itself (never anything from input). */
export function raw(s: string): Html {
  return new Html(s);
}
