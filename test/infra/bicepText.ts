import { readFileSync } from 'node:fs';

/**
 * Just enough of Bicep's grammar to read declarations out of the template for the checks the compiler
 * cannot make (scripts/check-bicep.mjs runs the real Bicep CLI for syntax, types and lint): comments and
 * strings are blanked out (positions kept), so brackets can be matched and declarations found without
 * being fooled by their contents.
 */
export interface BicepFile {
  path: string;
  text: string;
  /** The text with comments and string contents replaced by spaces; same length and line breaks. */
  code: string;
}

export function readBicep(path: string): BicepFile {
  const text = readFileSync(path, 'utf8');
  return { path, text, code: blankCommentsAndStrings(text) };
}

function blankCommentsAndStrings(text: string): string {
  const out = text.split('');
  const blank = (from: number, to: number) => {
    for (let i = from; i < to; i += 1) if (out[i] !== '\n') out[i] = ' ';
  };
  let i = 0;
  while (i < text.length) {
    if (text.startsWith('//', i)) {
      const end = text.indexOf('\n', i);
      const stop = end === -1 ? text.length : end;
      blank(i, stop);
      i = stop;
    } else if (text.startsWith('/*', i)) {
      const stop = text.indexOf('*/', i + 2) + 2;
      blank(i, stop);
      i = stop;
    } else if (text.startsWith("'''", i)) {
      const stop = text.indexOf("'''", i + 3) + 3;
      blank(i + 3, stop - 3);
      i = stop;
    } else if (text[i] === "'") {
      // Bicep escapes a quote as \' inside strings; ${...} interpolations stay inside the blanked text.
      let j = i + 1;
      while (j < text.length && text[j] !== "'") j += text[j] === '\\' ? 2 : 1;
      blank(i + 1, j);
      i = j + 1;
    } else {
      i += 1;
    }
  }
  return out.join('');
}

/** The index just after the bracket that closes the one at `open`. */
export function closingIndex(code: string, open: number): number {
  let depth = 0;
  for (let i = open; i < code.length; i += 1) {
    const char = code[i];
    if (char === '{' || char === '[' || char === '(') depth += 1;
    else if (char === '}' || char === ']' || char === ')') {
      depth -= 1;
      if (depth === 0) return i + 1;
    }
  }
  return code.length;
}

export interface BicepParam {
  name: string;
  type: string;
  hasDefault: boolean;
}

export function paramsOf(file: BicepFile): BicepParam[] {
  return [...file.code.matchAll(/^param (\w+) (\w+)(\s*=)?/gm)].map((match) => ({
    name: match[1] ?? '',
    type: match[2] ?? '',
    hasDefault: match[3] !== undefined,
  }));
}

export function outputsOf(file: BicepFile): string[] {
  return [...file.code.matchAll(/^output (\w+) /gm)].map((match) => match[1] ?? '');
}
