// The patched DataStream must send exactly the bytes the published one sends, for any input cut into any
// chunks: this is what makes the patch a pure speed-up that could be offered upstream.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import OriginalDataStream from './data-stream.original.js';
import { encodeWith, patchedDataStreams } from './dataStreams.ts';

const DOT = 0x2e;
const CR = 0x0d;
const LF = 0x0a;

// mostly the bytes the stream cares about, so that runs of dots, bare CRs and LFs and CRLFs are common
const messageByte = fc.oneof(
  { arbitrary: fc.constantFrom(DOT, CR, LF), weight: 6 },
  { arbitrary: fc.constantFrom(0x41, 0x20), weight: 2 },
  { arbitrary: fc.integer({ min: 0, max: 255 }), weight: 1 },
);

/** The input cut at random places, including empty chunks and cuts between CR and LF or before a dot. */
const chunkedInput = fc.array(messageByte, { maxLength: 300 }).chain((bytes) =>
  fc
    .tuple(fc.array(fc.integer({ min: 0, max: bytes.length }), { maxLength: 12 }), fc.boolean())
    .map(([cuts, cutAtEveryLineBreakAndDot]) => {
      const input = Buffer.from(bytes);
      const cutPoints = new Set(cuts);
      if (cutAtEveryLineBreakAndDot) {
        input.forEach((byte, index) => {
          if (byte === CR || byte === LF) cutPoints.add(index + 1);
          if (byte === DOT) cutPoints.add(index);
        });
      }
      const sorted = [0, ...[...cutPoints].sort((a, b) => a - b), input.length];
      return sorted.slice(1).map((end, index) => input.subarray(sorted[index], end));
    }),
);

describe.each(patchedDataStreams)(
  'patched nodemailer DataStream (%s build)',
  (_flavour, PatchedDataStream) => {
    it('sends the same bytes and counts as nodemailer 10.6.0 for random inputs and chunkings', async () => {
      await fc.assert(
        fc.asyncProperty(chunkedInput, async (chunks) => {
          const expected = await encodeWith(OriginalDataStream, chunks);
          const actual = await encodeWith(PatchedDataStream, chunks);
          expect(actual.output.toString('latin1')).toBe(expected.output.toString('latin1'));
          expect(actual.inByteCount).toBe(expected.inByteCount);
          expect(actual.outByteCount).toBe(expected.outByteCount);
        }),
        { numRuns: 3000 },
      );
    });

    it('sends the same bytes for a large base64 MIME body in odd-sized chunks', async () => {
      const base64 = Buffer.alloc(300_000, 0xa5).toString('base64').replace(/.{76}/g, '$&\r\n');
      const body = Buffer.from(`Subject: big\r\n\r\n.starts with a dot\n${base64}\r\n.\r\n..\r\nend`);
      const chunks: Buffer[] = [];
      for (let start = 0; start < body.length; start += 16_381)
        chunks.push(body.subarray(start, start + 16_381));
      const expected = await encodeWith(OriginalDataStream, chunks);
      const actual = await encodeWith(PatchedDataStream, chunks);
      expect(actual.output.equals(expected.output)).toBe(true);
      expect(actual.outByteCount).toBe(expected.outByteCount);
    });
  },
);
