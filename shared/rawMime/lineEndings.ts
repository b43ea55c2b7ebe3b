import { Transform, type TransformCallback } from 'node:stream';
import { RelayError } from '../errors.ts';
import { MAX_LINE_OCTETS } from '../headerRules.ts';

/**
 * A raw message's bytes with every line ending made CRLF, as SMTP requires (RFC 5321 2.3.8): a bare LF
 * (what Unix tools write) and a bare CR both become CRLF; CRLF passes unchanged. A CR at the end of one
 * chunk and an LF at the start of the next are one CRLF. Body lines (after the first empty line) longer
 * than 998 octets are refused (RFC 5322 2.1.1); header lines are the header parser's to check, so its
 * error can name the header (shared/rawMime/headerFields.ts).
 */
const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from('\r\n');
const LF_ONLY = Buffer.from('\n');

export function createLineEndingNormaliser(): Transform {
  // The previous chunk ended in a CR whose LF (if any) starts this chunk.
  let pendingCr = false;
  // Octets of the current line so far, over chunk boundaries.
  let lineOctets = 0;
  let inBody = false;
  let bodyLine = 0;

  // A line ended: an empty one ends the header section.
  const endLine = (): RelayError | undefined => {
    if (inBody) {
      bodyLine += 1;
      if (lineOctets > MAX_LINE_OCTETS) return bodyLineTooLong(bodyLine);
    } else if (lineOctets === 0) {
      inBody = true;
    }
    lineOctets = 0;
    return undefined;
  };

  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      const pieces: Buffer[] = [];
      let index = 0;
      if (pendingCr) {
        pendingCr = false;
        // CR + LF split over the chunks: the CR already went out and the LF starts this chunk's first run;
        // a bare CR gets its LF now.
        if (chunk[0] === LF) index = 1;
        else pieces.push(LF_ONLY);
        const problem = endLine();
        if (problem !== undefined) return callback(problem);
      }
      // Copied in runs: only a bare CR or LF interrupts a run.
      let runStart = 0;
      let nextLf = chunk.indexOf(LF, index);
      let nextCr = chunk.indexOf(CR, index);
      while (nextLf !== -1 || nextCr !== -1) {
        const at = nextCr === -1 || (nextLf !== -1 && nextLf < nextCr) ? nextLf : nextCr;
        lineOctets += at - index;
        if (chunk[at] === LF) {
          pieces.push(chunk.subarray(runStart, at), CRLF);
          index = at + 1;
          runStart = index;
        } else if (at + 1 === chunk.length) {
          pendingCr = true;
          index = chunk.length;
          break;
        } else if (chunk[at + 1] === LF) {
          index = at + 2;
        } else {
          pieces.push(chunk.subarray(runStart, at + 1), LF_ONLY);
          index = at + 1;
          runStart = index;
        }
        const problem = endLine();
        if (problem !== undefined) return callback(problem);
        if (nextLf !== -1 && nextLf < index) nextLf = chunk.indexOf(LF, index);
        if (nextCr !== -1 && nextCr < index) nextCr = chunk.indexOf(CR, index);
      }
      if (!pendingCr) lineOctets += chunk.length - index;
      pieces.push(chunk.subarray(runStart));
      if (inBody && lineOctets > MAX_LINE_OCTETS) return callback(bodyLineTooLong(bodyLine + 1));
      callback(null, pieces.length === 1 ? pieces[0] : Buffer.concat(pieces));
    },
    flush(callback) {
      if (pendingCr) {
        pendingCr = false;
        this.push(LF_ONLY);
      }
      callback();
    },
  });
}

function bodyLineTooLong(line: number): RelayError {
  return new RelayError('invalid_mime', {
    message: `Line ${line} of the message body is longer than ${MAX_LINE_OCTETS} octets (RFC 5322 2.1.1); nothing was sent.`,
    remedy:
      'Encode long lines (quoted-printable or base64, as mail libraries do) so that no line exceeds 998 octets.',
    details: [{ field: 'body', message: `line ${line} is longer than ${MAX_LINE_OCTETS} octets` }],
  });
}
