import http from 'node:http';

/**
 * A client posting to the relay's development host over real HTTP, as a caller's library would: the body
 * written chunk by chunk as the socket takes it (never joined into one buffer), on kept-alive connections.
 */
export interface HttpAnswer {
  status: number;
  body: unknown;
}

/** Until the request takes more (or is gone), with no listener left behind either way. */
function drained(request: http.ClientRequest): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      request.off('drain', done);
      request.off('close', done);
      resolve();
    };
    request.on('drain', done);
    request.on('close', done);
  });
}

export function createHttpClient(origin: string) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
  const url = new URL(origin);

  /**
   * Posts `chunks`; with `declaredBytes`, declares that Content-Length instead and leaves the body
   * unfinished (to read a limit the relay names when it refuses by the declared length alone).
   */
  function post(
    path: string,
    headers: Record<string, string>,
    chunks: readonly Buffer[],
    declaredBytes?: number,
  ): Promise<HttpAnswer> {
    return new Promise((resolve, reject) => {
      const bytes = declaredBytes ?? chunks.reduce((sum, chunk) => sum + chunk.length, 0);
      let answered = false;
      const request = http.request({
        agent,
        host: url.hostname,
        port: url.port,
        method: 'POST',
        path,
        headers: { ...headers, 'content-length': String(bytes) },
      });
      request.on('response', (response) => {
        answered = true;
        const parts: Buffer[] = [];
        response.on('data', (part: Buffer) => parts.push(part));
        response.on('error', reject);
        response.on('end', () => {
          const text = Buffer.concat(parts).toString('utf8');
          let body: unknown = text;
          try {
            body = text === '' ? undefined : JSON.parse(text);
          } catch {
            // Not JSON: kept as text for the error message.
          }
          resolve({ status: response.statusCode ?? 0, body });
          if (declaredBytes !== undefined) request.destroy();
        });
      });
      // A relay that refuses early (413, 400) may close the connection while the body is still going out.
      request.on('error', (error) => {
        if (!answered) reject(error);
      });
      (async () => {
        for (const chunk of chunks) {
          if (answered || request.destroyed) return;
          if (!request.write(chunk)) await drained(request);
        }
        if (declaredBytes === undefined) request.end();
      })().catch((error: unknown) => {
        if (!answered) reject(error);
      });
    });
  }

  return { post, close: () => agent.destroy() };
}

export type HttpClient = ReturnType<typeof createHttpClient>;
