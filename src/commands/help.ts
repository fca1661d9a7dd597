/**
 * @module
 * The `--help` text of every command (the README's "Command line" section says the same).
 */

/** The commands. */
export type Command = "serve" | "check" | "probe" | "schema" | "status" | "version" | "help";

const ENV = `Environment (flags win over the environment, the environment over the file):
  LLM_BALANCE_CONFIG       config file (when --config is not given)
  LLM_BALANCE_HOST         bind address (server.host)
  LLM_BALANCE_PORT         port (server.port)
  LLM_BALANCE_LOG_LEVEL    debug | info | warn | error (log.level)
  LLM_BALANCE_ADMIN_KEY    admin key (auth.admin_key)
  LLM_BALANCE_CLIENT_KEYS  client keys, comma-separated (replaces auth.client_keys)`;

const CONFIG =
  `  -c, --config FILE    Config file: native YAML/JSON, Seed A config.json or Seed B YAML.
                       Default: $LLM_BALANCE_CONFIG, else ./config.yaml, else ./config.json`;

/** Help text by command; each takes the version. */
export const HELP: Record<Command, (version: string) => string> = {
  help: (v) =>
    `llm-balance ${v}: one OpenAI-compatible endpoint over many LLM API keys and upstreams

Usage: llm-balance [command] [options]

Commands:
  serve     Start the proxy (the default command)
  check     Validate a config file and print a summary; contacts nothing
  probe     Send one health probe per key and print the results
  schema    Print the JSON Schema of the config format, for editors
  status    Show a running llm-balance's pools, keys and last events (--watch to follow)
  version   Print the version
  help      Print this help, or a command's: llm-balance help serve

Run 'llm-balance <command> --help' for a command's options.
Exit codes: 0 success, 1 runtime failure, 2 usage or config error.
Output for machines goes to stdout, messages and logs to stderr.

${ENV}`,
  schema: () =>
    `Usage: llm-balance schema

Prints the JSON Schema of llm-balance's own config format on stdout (the repository's
config.schema.json). Editors using yaml-language-server (VS Code's YAML extension, ...) read it
from a first line "# yaml-language-server: $schema=./config.schema.json" to complete fields,
show their help and flag mistakes. Reads no config.

Exit codes: 0.`,
  serve: () =>
    `Usage: llm-balance serve [--config FILE] [--host ADDR] [--port N] [--log-level LEVEL]

Starts the proxy. Once it accepts connections it prints its base URL (for example
http://127.0.0.1:8080) alone as the first line of stdout; logs go to stderr.
  SIGHUP           reload the config (also on file change with server.watch_config: true);
                   a broken config is logged and the old one keeps serving
  SIGTERM, SIGINT  stop accepting, let requests in flight finish for up to
                   server.drain_timeout (default 10 s), cut the rest with an error, exit 0;
                   a second signal cuts at once

Options:
${CONFIG}
  --host ADDR          Bind address (default server.host, 127.0.0.1). Another address than
                       loopback needs client keys or server.allow_unauthenticated_remote
  --port N             Port; 0 takes a free one (default server.port, 8080)
  --log-level LEVEL    debug | info | warn | error (default log.level, info)
  -h, --help           Print this help

Exit codes: 0 stopped cleanly, 1 cannot listen, 2 usage or config error.

${ENV}`,
  check: () =>
    `Usage: llm-balance check [--config FILE] [--json]

Validates a config file (any format): its fields, the plugins it loads, the strategies and
probes it names. Prints a summary on stdout (pools, strategies, upstreams, keys masked), or
every problem on stderr with its field path and line. Contacts nothing.

Options:
${CONFIG}
  --json               Print the summary as JSON; an invalid config as JSON on stdout too:
                       {"valid": false, "source", "errors": [{"path", "line", "message"}]}
  --host, --port, --log-level  As for serve (checked the way serve would use them)
  -h, --help           Print this help

Exit codes: 0 valid, 2 invalid (or a usage error).`,
  probe: () =>
    `Usage: llm-balance probe [--config FILE] [--json]

Sends one health probe per key, all at once, with each upstream's probe (by default GET
<base_url>/models with the key), and prints a table of key (masked), upstream, result, HTTP
status and latency on stdout, or a JSON array with --json.

Options:
${CONFIG}
  --json               Print JSON: [{"key", "id", "upstream", "result", "status", "latency_ms",
                       "detail"}] ("id": the key's stable id, as /admin/keys takes it)
  -h, --help           Print this help

Exit codes: 0 every key healthy, 1 some keys not healthy, 2 usage or config error.`,
  status: () =>
    `Usage: llm-balance status [--url URL] [--config FILE] [--json] [--watch] [--interval S] [--all]

Shows what the dashboard shows, in a terminal: reads GET <url>/dashboard/data from a running
llm-balance and prints a header (OK or NOT OK), one line per pool (strategy, usable keys,
requests and errors per second, latency, queue), the keys by pool (state, why and until when
a key is out, in flight, requests, failures, latency, budgets) and the last events. Keys
appear by mask only. A pool of more than 12 keys lists the keys not serving and sums up the
others. Colors on a terminal only, never with NO_COLOR set.

Options:
  --url URL            The llm-balance to read. Default: the config's server.host and
                       server.port, else http://127.0.0.1:8080
${CONFIG}
                       Optional here (address and admin key only); a named file must load
  --json               Print the data as received (pretty JSON; one line per frame with --watch)
  --watch              Redraw every 2 s until Ctrl-C (SIGINT) or SIGTERM
  --interval S         Seconds between redraws with --watch, from 0.1 to 3600 (default 2)
  --all                List every key, even in pools of many keys
  -h, --help           Print this help

The admin key is $LLM_BALANCE_ADMIN_KEY, else the config's auth.admin_key, sent as
"Authorization: Bearer"; it is never printed.

Exit codes: 0 every pool can serve, 1 some pool cannot or the state cannot be read
(unreachable, 401, not llm-balance: the reason on stderr; with --watch, the last frame's),
2 usage or config error.`,
  version: () =>
    `Usage: llm-balance version   (or llm-balance --version)

Prints the version on stdout.`,
};
