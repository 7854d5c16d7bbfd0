//! The two Lua scripts. Each runs inside one shard (every key it names shares the shard's hash
//! tag), so it is atomic on a single server and in a cluster alike.

use redis::Script;

/// Writes a batch of clicks of one shard. A click whose key already exists is skipped with
/// everything it would move, so a batch retried after an answer was lost counts nothing twice.
///
/// KEYS: 1 events stream, 2 residual-click set, then per click its key and its report key.
/// ARGV: 1 instance id, 2 events stream length, 3 residual set cut-off (ms), then per click:
/// JSON, expiry (ms), report expiry (ms), report field suffix, cost in millionths or "",
/// residual member or "", time (ms). A report key's expiry follows from its day, so it is set
/// once per batch.
const CLICKS: &str = r"
local written = 0
local clicks = (#KEYS - 2) / 2
local expiring = {}
for i = 0, clicks - 1 do
  local click_key, report_key = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  local a = 4 + 7 * i
  if redis.call('SET', click_key, ARGV[a], 'NX', 'PXAT', ARGV[a + 1]) then
    redis.call('HINCRBY', report_key, 'k' .. ARGV[a + 3], 1)
    if ARGV[a + 4] ~= '' then
      redis.call('HINCRBY', report_key, '$' .. ARGV[a + 3], ARGV[a + 4])
    end
    if not expiring[report_key] then
      redis.call('PEXPIREAT', report_key, ARGV[a + 2])
      expiring[report_key] = true
    end
    if ARGV[a + 5] ~= '' then
      redis.call('ZADD', KEYS[2], ARGV[a + 6], ARGV[a + 5])
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
        'o', ARGV[1], 'k', 'c', 'm', ARGV[a + 5], 't', ARGV[a + 6])
    end
    written = written + 1
  end
end
if clicks > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[3])
end
return written
";

/// Compare-and-set of one hash field, then a list of commands, all or nothing as far as the
/// comparison goes: when the field no longer holds what the caller read, nothing is written
/// and 0 is answered, so the caller reads again and decides again.
///
/// KEYS: 1 the hash, then every key the commands name. ARGV: 1 field, 2 the value read ("" for
/// none), 3 the value to write ("" to leave it), then commands, each as its argument count
/// followed by its arguments; an argument "\0<n>" stands for KEYS[n].
const COMPARE_AND_APPLY: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then current = '' end
if current ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
local i = 4
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local args = {}
  for j = 1, n do
    local a = ARGV[i + j]
    if string.byte(a, 1) == 0 then a = KEYS[tonumber(string.sub(a, 2))] end
    args[j] = a
  end
  redis.call(unpack(args))
  i = i + n + 1
end
return 1
";

pub(super) struct Scripts {
    pub clicks: Script,
    pub compare_and_apply: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            clicks: Script::new(CLICKS),
            compare_and_apply: Script::new(COMPARE_AND_APPLY),
        }
    }
}

/// A compare-and-set with the commands that go with it (`COMPARE_AND_APPLY`).
pub(super) struct Apply {
    keys: Vec<String>,
    args: Vec<String>,
}

impl Apply {
    /// Sets `field` of `hash` to `new` ("" leaves it) if it still holds `expected` ("" = none).
    pub(super) fn new(hash: String, field: String, expected: String, new: String) -> Apply {
        Apply {
            keys: vec![hash],
            args: vec![field, expected, new],
        }
    }

    /// A stand-in for `key` in a command's arguments.
    pub(super) fn key(&mut self, key: &str) -> String {
        let index = match self.keys.iter().position(|k| k == key) {
            Some(index) => index,
            None => {
                self.keys.push(key.to_string());
                self.keys.len() - 1
            }
        };
        format!("\0{}", index + 1)
    }

    pub(super) fn command(&mut self, parts: Vec<String>) {
        self.args.push(parts.len().to_string());
        self.args.extend(parts);
    }

    /// Runs it; true when the compare held and everything was written.
    pub(super) async fn run(
        &self,
        scripts: &Scripts,
        conn: &mut super::conn::Conn,
    ) -> redis::RedisResult<bool> {
        let mut invocation = scripts.compare_and_apply.prepare_invoke();
        for key in &self.keys {
            invocation.key(key);
        }
        for arg in &self.args {
            invocation.arg(arg);
        }
        let applied: i64 = invocation.invoke_async(conn).await?;
        Ok(applied == 1)
    }
}
