// nodemailer's DataStream behaviour, as its own suite checks it (nodemailer's npm package ships no tests,
// so these restate them from the published behaviour). They run against the patched stream in both builds,
// and against the unpatched copy to show they describe what nodemailer 10.6.0 itself does.
import { describe, expect, it } from 'vitest';
import OriginalDataStream from './data-stream.original.js';
import { type DataStreamClass, encodeWith, patchedDataStreams } from './dataStreams.ts';

const streams: ReadonlyArray<readonly [string, DataStreamClass]> = [
  ...patchedDataStreams.map(([flavour, stream]) => [`patched, ${flavour} build`, stream] as const),
  ['unpatched 10.6.0', OriginalDataStream],
];

describe.each(streams)('nodemailer DataStream (%s)', (_flavour, DataStream) => {
  async function encoded(...chunks: Array<Buffer | string>): Promise<string> {
    return (await encodeWith(DataStream, chunks)).output.toString('latin1');
  }

  it('escapes a dot at the start of every line and ends with <CRLF>.<CRLF>', async () => {
    expect(await encoded('.test\r\n.test\r\n.\r\n')).toBe('..test\r\n..test\r\n..\r\n.\r\n');
  });

  it('leaves dots elsewhere in a line alone', async () => {
    expect(await encoded('a.b\r\nend.\r\n .x\r\n')).toBe('a.b\r\nend.\r\n .x\r\n.\r\n');
  });

  it('turns bare LF into CRLF and escapes the dot after it', async () => {
    expect(await encoded('.test\n.test\nlast\n')).toBe('..test\r\n..test\r\nlast\r\n.\r\n');
    expect(await encoded('\n\n.x')).toBe('\r\n\r\n..x\r\n.\r\n');
  });

  it('turns bare CR into CRLF and escapes the dot after it, so "\\r.\\r" cannot end the data', async () => {
    expect(await encoded('a\r.\rb\r\r\n')).toBe('a\r\n..\r\nb\r\n\r\n.\r\n');
  });

  it('adds only as much line break as the input lacks before the final dot', async () => {
    expect(await encoded('no line break')).toBe('no line break\r\n.\r\n');
    expect(await encoded('crlf\r\n')).toBe('crlf\r\n.\r\n');
    expect(await encoded('lf\n')).toBe('lf\r\n.\r\n');
    expect(await encoded('cr\r')).toBe('cr\r\n.\r\n');
  });

  it('sends only the terminating sequence for empty input, and ignores empty chunks', async () => {
    expect(await encoded()).toBe('\r\n.\r\n');
    expect(await encoded('', Buffer.alloc(0), '')).toBe('\r\n.\r\n');
    expect(await encoded('.a\r', '', '.b')).toBe('..a\r\n..b\r\n.\r\n');
  });

  it('carries line state across chunk boundaries', async () => {
    // a CRLF split in two, a dot opening a chunk after a line break, a bare CR or LF ending a chunk
    expect(await encoded('a\r', '\n.b')).toBe('a\r\n..b\r\n.\r\n');
    expect(await encoded('a\r\n', '.b\n', '.c\r', '.d\r', 'e')).toBe('a\r\n..b\r\n..c\r\n..d\r\ne\r\n.\r\n');
    expect(await encoded('.', '.', '\n', '.')).toBe('...\r\n..\r\n.\r\n');
    const message = '.a\r\n.\rb\n\n.\r\r\n..c';
    expect(await encoded(...message)).toBe(await encoded(message));
  });

  it('counts the bytes it was given and the bytes it sent, including the terminating sequence', async () => {
    const result = await encodeWith(DataStream, ['.é\n', Buffer.from('x\r')]);
    expect(result.output.toString('utf8')).toBe('..é\r\nx\r\n.\r\n');
    expect(result.inByteCount).toBe(Buffer.byteLength('.é\n') + 2);
    expect(result.outByteCount).toBe(result.output.length);
  });

  it('passes a chunk that needs no change through without copying it', async () => {
    const chunk = Buffer.from('plain line\r\nanother line\r\n');
    const stream = new DataStream();
    const pieces: Buffer[] = [];
    stream.on('data', (piece: Buffer) => pieces.push(piece));
    const ended = new Promise((resolve) => stream.once('end', resolve));
    stream.end(chunk);
    await ended;
    expect(pieces[0]).toBe(chunk);
  });
});
