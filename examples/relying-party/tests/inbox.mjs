// A real SMTP server on 127.0.0.1 (nodemailer's smtp-server) that Latchkey relays to in
// plain text (its `tls = "none"`, allowed to a loopback relay only): every message is
// parsed with mailparser as a mail client would, and kept for the tests to read.
import { SMTPServer } from "smtp-server";
import { simpleParser } from "mailparser";

export class Inbox {
  constructor() {
    this.messages = [];
    this.failures = [];
  }

  async start() {
    this.server = new SMTPServer({
      secure: false,
      authOptional: true,
      disabledCommands: ["STARTTLS"],
      logger: false,
      onData: (stream, session, callback) => {
        const to = session.envelope.rcptTo.map((r) => r.address.toLowerCase());
        simpleParser(stream)
          .then((mail) => {
            this.messages.push({
              to,
              from: mail.from?.text,
              subject: mail.subject ?? "",
              text: mail.text ?? "",
              html: typeof mail.html === "string" ? mail.html : "",
              messageId: mail.messageId,
            });
            callback();
          })
          .catch((e) => {
            this.failures.push(e);
            callback(e);
          });
      },
    });
    this.server.on("error", (e) => this.failures.push(e));
    await new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(0, "127.0.0.1", () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    this.port = this.server.server.address().port;
    return this;
  }

  /// The messages received so far for `address` (an envelope recipient).
  to(address) {
    const want = address.toLowerCase();
    return this.messages.filter((m) => m.to.includes(want));
  }

  /// The `n`th message (from 1) to `address`, once it has arrived.
  async waitFor(address, n = 1, { timeout = 10_000 } = {}) {
    const until = Date.now() + timeout;
    for (;;) {
      const got = this.to(address);
      if (got.length >= n) return got[n - 1];
      if (Date.now() >= until) {
        const seen = this.messages.map((m) => `${m.to.join(",")}: ${m.subject}`);
        throw new Error(
          `message ${n} to ${address} did not arrive within ${timeout} ms; ${got.length} did; ` +
            `all received: ${JSON.stringify(seen)}; parse failures: ${this.failures.map(String).join("; ") || "none"}`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  close() {
    return new Promise((resolve) => (this.server ? this.server.close(resolve) : resolve()));
  }
}

/// Starts an inbox on 127.0.0.1 on a free port.
export const startInbox = () => new Inbox().start();
