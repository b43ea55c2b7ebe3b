import { readFileSync } from 'node:fs';

/**
 * Just enough of Bicep's grammar to check a template on a machine without the Bicep CLI (it is not on
 * npm and this network reaches only the npm registry): comments and strings are blanked out (positions
 * kept), so brackets can be matched and declarations found without being fooled by their contents.
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

/** Problems with bracket nesting: an empty list means every (, [ and { is closed in order. */
export function bracketProblems(file: BicepFile): string[] {
  const pairs: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
  const stack: { char: string; line: number }[] = [];
  const problems: string[] = [];
  let line = 1;
  for (const char of file.code) {
    if (char === '\n') line += 1;
    else if (char === '(' || char === '[' || char === '{') stack.push({ char, line });
    else if (char in pairs) {
      const open = stack.pop();
      if (open?.char !== pairs[char]) problems.push(`${file.path}:${line}: unexpected ${char}`);
    }
  }
  for (const open of stack) problems.push(`${file.path}:${open.line}: ${open.char} never closed`);
  return problems;
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

export interface BicepModule {
  symbol: string;
  source: string;
  /** The keys given in its `params: { }` block. */
  params: string[];
}

export function modulesOf(file: BicepFile): BicepModule[] {
  const modules: BicepModule[] = [];
  for (const match of file.text.matchAll(/^module (\w+) '([^']+)' = (?:if \([^)]*\) )?\{/gm)) {
    const open = (match.index ?? 0) + match[0].length - 1;
    const block = file.code.slice(open, closingIndex(file.code, open));
    modules.push({ symbol: match[1] ?? '', source: match[2] ?? '', params: topLevelKeys(block, 'params') });
  }
  return modules;
}

/** Keys directly inside `name: { ... }` within a block (one level deep only). */
export function topLevelKeys(block: string, name: string): string[] {
  const start = new RegExp(`\\b${name}: \\{`).exec(block);
  if (start === null) return [];
  const open = start.index + start[0].length - 1;
  const body = block.slice(open + 1, closingIndex(block, open) - 1);
  const keys: string[] = [];
  let depth = 0;
  for (const line of body.split('\n')) {
    const key = /^\s*(\w+):/.exec(line);
    if (depth === 0 && key?.[1] !== undefined) keys.push(key[1]);
    for (const char of line) {
      if (char === '{' || char === '[' || char === '(') depth += 1;
      if (char === '}' || char === ']' || char === ')') depth -= 1;
    }
  }
  return keys;
}

export function resourceTypesOf(file: BicepFile): string[] {
  return [...file.text.matchAll(/^\s*resource \w+ '([^']+)'/gm)].map((match) => match[1] ?? '');
}
