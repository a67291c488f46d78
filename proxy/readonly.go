package proxy

// readOnlyCommands are the commands that only read (Redis's "readonly"
// command flag): after a failover one in flight is sent again, since
// running it twice cannot change anything. Anything not listed counts as a
// write and is never sent again.
var readOnlyCommands = map[string]bool{}

func init() {
	for _, c := range []string{
		"get", "mget", "getrange", "substr", "strlen", "exists", "ttl", "pttl", "expiretime", "pexpiretime",
		"type", "keys", "scan", "randomkey", "dbsize", "dump", "object", "touch", "lcs",
		"hget", "hmget", "hgetall", "hkeys", "hvals", "hlen", "hexists", "hstrlen", "hscan", "hrandfield",
		"lrange", "llen", "lindex", "lpos",
		"smembers", "sismember", "smismember", "scard", "srandmember", "sinter", "sintercard", "sunion", "sdiff", "sscan",
		"zrange", "zrangebyscore", "zrevrange", "zrevrangebyscore", "zrangebylex", "zrevrangebylex", "zscore", "zmscore",
		"zcard", "zcount", "zlexcount", "zrank", "zrevrank", "zscan", "zrandmember", "zinter", "zunion", "zdiff", "zintercard",
		"xrange", "xrevrange", "xlen", "xread", "xinfo", "xpending",
		"getbit", "bitcount", "bitpos", "bitfield_ro", "pfcount",
		"geopos", "geodist", "geohash", "georadius_ro", "georadiusbymember_ro", "geosearch",
		"sort_ro", "ping", "echo", "time", "lastsave", "info", "memory",
	} {
		readOnlyCommands[c] = true
	}
}

// readOnly reports whether the lower-cased command name only reads.
func readOnly(name []byte) bool { return readOnlyCommands[string(name)] }
