import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";

/**
 * A TCP proxy between the sink and a real server, for network faults: it can partition its
 * connections (stop forwarding both ways while keeping both sockets open, as a dead link or a
 * stateful firewall that lost its mapping would), at once or when a given text passes towards the
 * server. Connections opened after a partition forward normally.
 */
export class TcpProxy {
  private readonly links = new Set<Link>();
  private trigger: { text: string; onTrigger?: () => void } | null = null;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetHost: string, targetPort: number): Promise<TcpProxy> {
    const server = createServer();
    const proxy: TcpProxy = await new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        const addr = server.address();
        resolve(new TcpProxy(server, typeof addr === "object" && addr ? addr.port : 0));
      });
    });
    server.on("connection", (client) => proxy.accept(client, targetHost, targetPort));
    return proxy;
  }

  /** The same URL, through the proxy. */
  url(targetUrl: string): string {
    const u = new URL(targetUrl);
    u.hostname = "127.0.0.1";
    u.port = String(this.port);
    return u.toString();
  }

  /** Partitions every open connection now. */
  partition(): void {
    for (const l of this.links) l.partitioned = true;
  }

  /**
   * Partitions a connection as soon as `text` passes from client to server on it; the chunk holding
   * it is not delivered (the server never sees that message). Applies once.
   */
  partitionWhenSent(text: string, onTrigger?: () => void): void {
    this.trigger = { text, onTrigger };
  }

  /** Connections currently open through the proxy. */
  get connections(): number {
    return this.links.size;
  }

  async close(): Promise<void> {
    for (const l of this.links) {
      l.client.destroy();
      l.upstream.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket, host: string, port: number): void {
    const upstream = tcpConnect(port, host);
    const link: Link = { client, upstream, partitioned: false };
    this.links.add(link);
    // A closed end closes the other, unless partitioned: then the other end never hears of it, and
    // stays open until its own side gives up (or the proxy closes).
    const closed = (other: Socket) => () => {
      if (!link.partitioned) other.destroy();
      if (client.destroyed && upstream.destroyed) this.links.delete(link);
    };
    client.on("error", () => {});
    upstream.on("error", () => {});
    client.on("close", closed(upstream));
    upstream.on("close", closed(client));
    client.on("data", (chunk: Buffer) => {
      if (!link.partitioned && this.trigger && chunk.includes(this.trigger.text)) {
        link.partitioned = true;
        const { onTrigger } = this.trigger;
        this.trigger = null;
        onTrigger?.();
      }
      // Partitioned: read and discard, so both sockets stay open and nothing arrives.
      if (!link.partitioned) upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      if (!link.partitioned) client.write(chunk);
    });
  }
}

interface Link {
  client: Socket;
  upstream: Socket;
  partitioned: boolean;
}
