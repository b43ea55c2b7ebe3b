import { createRequire } from 'node:module';
import DataStream from 'nodemailer/lib/smtp-connection/data-stream.js';

export type DataStreamClass = typeof DataStream;

// nodemailer ships an ES module and a CommonJS build; the patch changes both, and either may be the one
// loaded (the relay imports the ES module, a bundle or a require() of nodemailer gets the CommonJS one).
export const patchedDataStreams: ReadonlyArray<readonly [flavour: string, stream: DataStreamClass]> = [
  ['ES module', DataStream],
  ['CommonJS', createRequire(import.meta.url)('nodemailer/lib/smtp-connection/data-stream.js')],
];

export interface DataStreamResult {
  output: Buffer;
  inByteCount: number;
  outByteCount: number;
}

/** Writes the chunks one by one into a fresh stream and collects what comes out. */
export async function encodeWith(
  Stream: DataStreamClass,
  chunks: ReadonlyArray<Buffer | string>,
): Promise<DataStreamResult> {
  const stream = new Stream();
  const output: Buffer[] = [];
  stream.on('data', (piece: Buffer) => output.push(piece));
  const ended = new Promise<void>((resolve, reject) => {
    stream.once('end', resolve);
    stream.once('error', reject);
  });
  for (const chunk of chunks) {
    stream.write(chunk);
  }
  stream.end();
  await ended;
  return {
    output: Buffer.concat(output),
    inByteCount: stream.inByteCount,
    outByteCount: stream.outByteCount,
  };
}
