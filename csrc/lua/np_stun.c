/*
 * np_stun.c - Lua binding of the STUN codec (stun.h): natpunch.core.stun.
 *
 *   stun.decode(bytes [, key])            -> msg | nil, message, code
 *   stun.encode(msg [, key])              -> bytes
 *   stun.answer_binding(req, ip, port [, software [, opts]])
 *                                         -> bytes | nil, message, code
 *   stun.is_stun(bytes)                   -> boolean
 *   stun.long_term_key(user, realm, pass) -> 16-byte key (RFC 8489 §9.2.2)
 *
 * Misuse (wrong types, bad address text, out-of-range numbers) raises;
 * bytes that are not a valid message give nil, "ECODE: text", "ECODE",
 * like luv.  No state: every function works on its arguments only.
 */
#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include <stddef.h>
#include <string.h>

#include "crypto.h"
#include "stun.h"
#include "turn.h"

#define MSG_MAX   (STUN_HEADER_SIZE + 0xFFFF) /* 16-bit length field */
#define SMALL_MSG 1500                        /* typical MTU: try this first */

static int push_fail(lua_State *L, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", stun_errname(err), stun_strerror(err));
  lua_pushstring(L, stun_errname(err));
  return 3;
}

/* Methods with names (RFC 8489 §18.2, RFC 8656 §17); others are numbers. */
static const struct {
  const char *name;
  uint16_t method;
} methods[] = {
    {"binding", STUN_METHOD_BINDING},
    {"allocate", STUN_METHOD_ALLOCATE},
    {"refresh", STUN_METHOD_REFRESH},
    {"send", STUN_METHOD_SEND},
    {"data", STUN_METHOD_DATA},
    {"create_permission", STUN_METHOD_CREATE_PERMISSION},
    {"channel_bind", STUN_METHOD_CHANNEL_BIND},
};
#define N_METHODS (sizeof methods / sizeof methods[0])

static const char *method_name(uint16_t method) {
  for (size_t i = 0; i < N_METHODS; i++)
    if (methods[i].method == method) return methods[i].name;
  return NULL;
}

static const char *class_name(uint16_t cls) {
  switch (cls) {
  case STUN_CLASS_REQUEST: return "request";
  case STUN_CLASS_INDICATION: return "indication";
  case STUN_CLASS_SUCCESS: return "success";
  default: return "error";
  }
}

/* The address and byte-string attributes: one row each, read by decode and
 * written by encode in this order (SOFTWARE goes last, before the
 * integrity attributes: software_attr). */
struct msg_attr {
  const char *name; /* the field of the Lua table */
  uint32_t has;     /* STUN_HAS_* */
  uint16_t type;    /* STUN_ATTR_* */
  size_t offset;    /* of its struct stun_addr / struct stun_bytes in struct stun_msg */
};

#define ATTR(name, has, type, member) \
  { name, has, type, offsetof(struct stun_msg, member) }
static const struct msg_attr addr_attrs[] = {
    ATTR("xor_mapped_address", STUN_HAS_XOR_MAPPED, STUN_ATTR_XOR_MAPPED_ADDRESS, xor_mapped),
    ATTR("mapped_address", STUN_HAS_MAPPED, STUN_ATTR_MAPPED_ADDRESS, mapped),
    ATTR("response_origin", STUN_HAS_RESPONSE_ORIGIN, STUN_ATTR_RESPONSE_ORIGIN, response_origin),
    ATTR("other_address", STUN_HAS_OTHER_ADDRESS, STUN_ATTR_OTHER_ADDRESS, other_address),
    ATTR("source_address", STUN_HAS_SOURCE_ADDRESS, STUN_ATTR_SOURCE_ADDRESS, source_address),
    ATTR("changed_address", STUN_HAS_CHANGED_ADDRESS, STUN_ATTR_CHANGED_ADDRESS, changed_address),
    ATTR("xor_peer_address", STUN_HAS_XOR_PEER, STUN_ATTR_XOR_PEER_ADDRESS, xor_peer),
    ATTR("xor_relayed_address", STUN_HAS_XOR_RELAYED, STUN_ATTR_XOR_RELAYED_ADDRESS, xor_relayed),
};
static const struct msg_attr bytes_attrs[] = {
    ATTR("data", STUN_HAS_DATA, STUN_ATTR_DATA, data),
    ATTR("username", STUN_HAS_USERNAME, STUN_ATTR_USERNAME, username),
    ATTR("realm", STUN_HAS_REALM, STUN_ATTR_REALM, realm),
    ATTR("nonce", STUN_HAS_NONCE, STUN_ATTR_NONCE, nonce),
};
static const struct msg_attr software_attr =
    ATTR("software", STUN_HAS_SOFTWARE, STUN_ATTR_SOFTWARE, software);
#undef ATTR
#define N_ATTRS(a) (sizeof(a) / sizeof(a)[0])

static const struct stun_addr *msg_addr(const struct stun_msg *m, const struct msg_attr *a) {
  return (const struct stun_addr *)((const char *)m + a->offset);
}

static struct stun_bytes msg_bytes(const struct stun_msg *m, const struct msg_attr *a) {
  return *(const struct stun_bytes *)((const char *)m + a->offset);
}

/* ---------------------------------------------------------------- decode */

static void set_addr(lua_State *L, const char *field, const struct stun_addr *a) {
  char ip[64];
  if (stun_addr_format(a, ip, sizeof ip) < 0) return;
  lua_createtable(L, 0, 3);
  lua_pushstring(L, a->family == STUN_FAMILY_IPV4 ? "inet" : "inet6");
  lua_setfield(L, -2, "family");
  lua_pushstring(L, ip);
  lua_setfield(L, -2, "ip");
  lua_pushinteger(L, a->port);
  lua_setfield(L, -2, "port");
  lua_setfield(L, -2, field);
}

static void set_bytes(lua_State *L, const char *field, struct stun_bytes b) {
  lua_pushlstring(L, (const char *)b.ptr, b.len);
  lua_setfield(L, -2, field);
}

static void set_int(lua_State *L, const char *field, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, field);
}

/* An address family byte (RFC 8656 §18.10-18.12): "inet", "inet6", or
 * the number when it is neither. */
static void set_family(lua_State *L, const char *field, uint8_t family) {
  if (family == STUN_FAMILY_IPV4)
    lua_pushstring(L, "inet");
  else if (family == STUN_FAMILY_IPV6)
    lua_pushstring(L, "inet6");
  else
    lua_pushinteger(L, family);
  lua_setfield(L, -2, field);
}

static void set_bool(lua_State *L, const char *field, int v) {
  lua_pushboolean(L, v);
  lua_setfield(L, -2, field);
}

static void set_list(lua_State *L, const char *field, const uint16_t *v, size_t n) {
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushinteger(L, v[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, field);
}

static int stun_decode(lua_State *L) {
  size_t len, keylen = 0;
  const uint8_t *p = (const uint8_t *)luaL_checklstring(L, 1, &len);
  const char *key = luaL_optlstring(L, 2, NULL, &keylen);
  struct stun_msg m;
  int r = stun_read(p, len, &m);
  if (r < 0) return push_fail(L, r);

  lua_createtable(L, 0, 8);
  if (method_name(m.method) != NULL)
    lua_pushstring(L, method_name(m.method));
  else
    lua_pushinteger(L, m.method);
  lua_setfield(L, -2, "method");
  set_int(L, "method_code", m.method);
  lua_pushstring(L, class_name(m.cls));
  lua_setfield(L, -2, "class");
  lua_pushlstring(L, (const char *)m.tid, m.tid_len);
  lua_setfield(L, -2, "transaction_id");
  if (m.classic) set_bool(L, "classic", 1);

  for (size_t i = 0; i < N_ATTRS(addr_attrs); i++)
    if (m.has & addr_attrs[i].has) set_addr(L, addr_attrs[i].name, msg_addr(&m, &addr_attrs[i]));
  if (m.n_relayed == 2) set_addr(L, "xor_relayed_address2", &m.xor_relayed2);
  for (size_t i = 0; i < N_ATTRS(bytes_attrs); i++)
    if (m.has & bytes_attrs[i].has)
      set_bytes(L, bytes_attrs[i].name, msg_bytes(&m, &bytes_attrs[i]));
  if (m.has & software_attr.has) set_bytes(L, software_attr.name, msg_bytes(&m, &software_attr));
  if (m.has & STUN_HAS_ERROR_CODE) {
    lua_createtable(L, 0, 2);
    set_int(L, "code", m.error_code);
    set_bytes(L, "reason", m.error_reason);
    lua_setfield(L, -2, "error");
  }
  if (m.has & STUN_HAS_UNKNOWN_ATTRIBUTES)
    set_list(L, "unknown_attributes", m.unknown_attributes, m.n_unknown_attributes);
  if (m.has & STUN_HAS_CHANGE_REQUEST) {
    lua_createtable(L, 0, 2);
    set_bool(L, "ip", (m.change_request & STUN_CHANGE_IP) != 0);
    set_bool(L, "port", (m.change_request & STUN_CHANGE_PORT) != 0);
    lua_setfield(L, -2, "change_request");
  }
  if (m.has & STUN_HAS_RESPONSE_PORT) set_int(L, "response_port", m.response_port);
  if (m.has & STUN_HAS_PADDING) set_int(L, "padding", (lua_Integer)m.padding_len);
  if (m.has & STUN_HAS_PRIORITY) set_int(L, "priority", m.priority);
  if (m.has & STUN_HAS_USE_CANDIDATE) set_bool(L, "use_candidate", 1);
  if (m.has & STUN_HAS_LIFETIME) set_int(L, "lifetime", m.lifetime);
  if (m.has & STUN_HAS_CHANNEL_NUMBER) set_int(L, "channel_number", m.channel_number);
  if (m.has & STUN_HAS_REQUESTED_TRANSPORT)
    set_int(L, "requested_transport", m.requested_transport);
  if (m.has & STUN_HAS_DONT_FRAGMENT) set_bool(L, "dont_fragment", 1);
  if (m.has & STUN_HAS_REQUESTED_FAMILY)
    set_family(L, "requested_address_family", m.requested_family);
  if (m.has & STUN_HAS_ADDITIONAL_FAMILY)
    set_family(L, "additional_address_family", m.additional_family);
  if (m.has & STUN_HAS_ADDRESS_ERROR) {
    lua_createtable(L, 0, 3);
    set_family(L, "family", m.address_error_family);
    set_int(L, "code", m.address_error_code);
    set_bytes(L, "reason", m.address_error_reason);
    lua_setfield(L, -2, "address_error");
  }
  /* 64-bit tie-breakers: Lua integers are 64-bit, so they wrap to
   * negative above 2^63 and encode() maps them back */
  if (m.has & STUN_HAS_ICE_CONTROLLED) set_int(L, "ice_controlled", (lua_Integer)m.ice_controlled);
  if (m.has & STUN_HAS_ICE_CONTROLLING)
    set_int(L, "ice_controlling", (lua_Integer)m.ice_controlling);

  if (m.has & STUN_HAS_INTEGRITY) {
    set_bool(L, "has_integrity", 1);
    if (key != NULL) set_bool(L, "integrity", stun_check_integrity(p, &m, key, keylen) == 0);
  }
  if (m.has & STUN_HAS_INTEGRITY_SHA256) {
    set_bool(L, "has_integrity_sha256", 1);
    if (key != NULL)
      set_bool(L, "integrity_sha256", stun_check_integrity_sha256(p, &m, key, keylen) == 0);
  }
  if (m.has & STUN_HAS_FINGERPRINT) set_bool(L, "fingerprint", m.fingerprint_ok);
  if (m.n_unknown_required > 0) {
    size_t n = m.n_unknown_required < STUN_MAX_LISTED ? m.n_unknown_required : STUN_MAX_LISTED;
    set_list(L, "unknown_required", m.unknown_required, n);
  }
  return 1;
}

/* ---------------------------------------------------------------- encode */

/* Field `name` of the message table (argument 1) pushed; returns its type. */
static int field(lua_State *L, int idx, const char *name) {
  return lua_getfield(L, idx, name);
}

/* The integer on top of the stack, in lo..hi; `prefix name` names it in
 * the error, e.g. "msg.error." "code". */
static lua_Integer check_int(lua_State *L, const char *prefix, const char *name, lua_Integer lo,
                             lua_Integer hi) {
  int isnum;
  lua_Integer v = lua_tointegerx(L, -1, &isnum);
  if (!isnum) luaL_error(L, "%s%s: integer expected, got %s", prefix, name, luaL_typename(L, -1));
  if (v < lo || v > hi) luaL_error(L, "%s%s: %I out of range %I..%I", prefix, name, v, lo, hi);
  return v;
}

static const char *str_field(lua_State *L, const char *name, size_t *len) {
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "msg.%s: string expected, got %s", name, luaL_typename(L, -1));
  return lua_tolstring(L, -1, len);
}

/* {ip = "203.0.113.1", port = N [, family = "inet"|"inet6"]} at index t;
 * `what` names it in errors ("msg.mapped_address"). */
static void check_addr(lua_State *L, int t, const char *what, struct stun_addr *a) {
  t = lua_absindex(L, t);
  if (!lua_istable(L, t))
    luaL_error(L, "%s: table {ip=, port=} expected, got %s", what, luaL_typename(L, t));
  int top = lua_gettop(L);
  lua_getfield(L, t, "port");
  lua_Integer port = check_int(L, what, ".port", 0, 65535);
  lua_getfield(L, t, "ip");
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "%s.ip: string expected, got %s", what, luaL_typename(L, -1));
  const char *ip = lua_tostring(L, -1);
  if (stun_addr_parse(ip, (uint16_t)port, a) < 0)
    luaL_error(L, "%s.ip: invalid IP address '%s'", what, ip);
  lua_getfield(L, t, "family");
  if (!lua_isnil(L, -1)) {
    const char *fam = lua_tostring(L, -1);
    const char *want = a->family == STUN_FAMILY_IPV4 ? "inet" : "inet6";
    if (lua_type(L, -1) != LUA_TSTRING || strcmp(fam, want) != 0)
      luaL_error(L, "%s.family: \"%s\" expected for ip %s", what, want, ip);
  }
  lua_settop(L, top);
}

static void put_addr_field(lua_State *L, struct stun_writer *w, const char *name, uint16_t type) {
  if (field(L, 1, name) != LUA_TNIL) {
    struct stun_addr a;
    const char *what = lua_pushfstring(L, "msg.%s", name);
    check_addr(L, -2, what, &a);
    lua_pop(L, 1);
    stun_put_addr(w, type, &a);
  }
  lua_pop(L, 1);
}

static void put_string_field(lua_State *L, struct stun_writer *w, const char *name, uint16_t type) {
  if (field(L, 1, name) != LUA_TNIL) {
    size_t len;
    const char *s = str_field(L, name, &len);
    stun_put(w, type, s, len);
  }
  lua_pop(L, 1);
}

static void put_error_field(lua_State *L, struct stun_writer *w) {
  if (field(L, 1, "error") != LUA_TNIL) {
    if (!lua_istable(L, -1))
      luaL_error(L, "msg.error: table {code=, reason=} expected, got %s", luaL_typename(L, -1));
    int t = lua_gettop(L);
    lua_getfield(L, t, "code");
    int lo = w->classic ? 100 : 300; /* RFC 8489 §14.8 / RFC 3489 §11.2.9 */
    lua_Integer code = check_int(L, "msg.error.", "code", lo, 699);
    lua_getfield(L, t, "reason");
    const char *reason = NULL;
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "msg.error.reason: string expected, got %s", luaL_typename(L, -1));
      reason = lua_tostring(L, -1);
    }
    stun_put_error(w, (int)code, reason);
    lua_settop(L, t);
  }
  lua_pop(L, 1);
}

/* "inet" or "inet6" on top of the stack: its family byte; `what` names it
 * in the error. */
static uint8_t check_family(lua_State *L, const char *what) {
  const char *f = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
  if (strcmp(f, "inet") == 0) return STUN_FAMILY_IPV4;
  if (strcmp(f, "inet6") == 0) return STUN_FAMILY_IPV6;
  return (uint8_t)luaL_error(L, "%s: \"inet\" or \"inet6\" expected", what);
}

/* REQUESTED-ADDRESS-FAMILY, ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.10,
 * §18.11): msg.requested_address_family = "inet" | "inet6", ... */
static void put_family_field(lua_State *L, struct stun_writer *w, const char *name, uint16_t type) {
  if (field(L, 1, name) != LUA_TNIL) {
    const char *what = lua_pushfstring(L, "msg.%s", name);
    lua_pushvalue(L, -2);
    uint8_t fam = check_family(L, what);
    lua_pop(L, 2);
    stun_put_address_family(w, type, fam);
  }
  lua_pop(L, 1);
}

/* ADDRESS-ERROR-CODE (RFC 8656 §18.12): msg.address_error = {family=,
 * code=, reason=}. */
static void put_address_error_field(lua_State *L, struct stun_writer *w) {
  if (field(L, 1, "address_error") != LUA_TNIL) {
    if (!lua_istable(L, -1))
      luaL_error(L, "msg.address_error: table {family=, code=, reason=} expected, got %s",
                 luaL_typename(L, -1));
    int t = lua_gettop(L);
    lua_getfield(L, t, "family");
    uint8_t fam = check_family(L, "msg.address_error.family");
    lua_getfield(L, t, "code");
    lua_Integer code = check_int(L, "msg.address_error.", "code", 300, 699);
    lua_getfield(L, t, "reason");
    const char *reason = NULL;
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "msg.address_error.reason: string expected, got %s", luaL_typename(L, -1));
      reason = lua_tostring(L, -1);
    }
    stun_put_address_error(w, fam, (int)code, reason);
    lua_settop(L, t);
  }
  lua_pop(L, 1);
}

static void put_unknown_field(lua_State *L, struct stun_writer *w) {
  if (field(L, 1, "unknown_attributes") != LUA_TNIL) {
    if (!lua_istable(L, -1))
      luaL_error(L, "msg.unknown_attributes: list expected, got %s", luaL_typename(L, -1));
    uint16_t types[64];
    lua_Integer n = luaL_len(L, -1);
    if (n > (lua_Integer)(sizeof types / sizeof types[0]))
      luaL_error(L, "msg.unknown_attributes: at most %d types",
                 (int)(sizeof types / sizeof types[0]));
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      types[i - 1] = (uint16_t)check_int(L, "msg.", "unknown_attributes[i]", 0, 0xFFFF);
      lua_pop(L, 1);
    }
    stun_put_unknown(w, types, (size_t)n);
  }
  lua_pop(L, 1);
}

static void put_change_field(lua_State *L, struct stun_writer *w) {
  if (field(L, 1, "change_request") != LUA_TNIL) {
    if (!lua_istable(L, -1))
      luaL_error(L, "msg.change_request: table {ip=, port=} expected, got %s",
                 luaL_typename(L, -1));
    uint32_t flags = 0;
    lua_getfield(L, -1, "ip");
    if (lua_toboolean(L, -1)) flags |= STUN_CHANGE_IP;
    lua_getfield(L, -2, "port");
    if (lua_toboolean(L, -1)) flags |= STUN_CHANGE_PORT;
    lua_pop(L, 2);
    stun_put_change_request(w, flags);
  }
  lua_pop(L, 1);
}

static int flag_field(lua_State *L, const char *name) {
  int v = field(L, 1, name) != LUA_TNIL && lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* The integer and flag attributes, written in this order: each an integer
 * in lo..hi (a flag: present when true) put by its writer.  ICE's 64-bit
 * tie-breakers take any Lua integer (decode wraps them to negative above
 * 2^63).  TURN's are RFC 8656 §18. */
enum int_put {
  PUT_U32,
  PUT_U64,
  PUT_FLAG,
  PUT_RESPONSE_PORT,
  PUT_PADDING,
  PUT_TRANSPORT,
  PUT_CHANNEL
};
static const struct int_attr {
  const char *name;
  enum int_put put;
  uint16_t type; /* for PUT_U32, PUT_U64, PUT_FLAG */
  lua_Integer lo, hi;
} int_attrs[] = {
    {"response_port", PUT_RESPONSE_PORT, 0, 0, 65535},
    {"priority", PUT_U32, STUN_ATTR_PRIORITY, 0, 0xFFFFFFFF},
    {"use_candidate", PUT_FLAG, STUN_ATTR_USE_CANDIDATE, 0, 0},
    {"ice_controlled", PUT_U64, STUN_ATTR_ICE_CONTROLLED, LUA_MININTEGER, LUA_MAXINTEGER},
    {"ice_controlling", PUT_U64, STUN_ATTR_ICE_CONTROLLING, LUA_MININTEGER, LUA_MAXINTEGER},
    {"padding", PUT_PADDING, 0, 0, 0xFFFF},
    {"requested_transport", PUT_TRANSPORT, 0, 0, 255},
    {"lifetime", PUT_U32, STUN_ATTR_LIFETIME, 0, 0xFFFFFFFF},
    {"channel_number", PUT_CHANNEL, 0, STUN_CHANNEL_MIN, STUN_CHANNEL_MAX},
    {"dont_fragment", PUT_FLAG, STUN_ATTR_DONT_FRAGMENT, 0, 0},
};

static void put_int_field(lua_State *L, struct stun_writer *w, const struct int_attr *a) {
  if (a->put == PUT_FLAG) {
    if (flag_field(L, a->name)) stun_put(w, a->type, NULL, 0);
    return;
  }
  if (field(L, 1, a->name) != LUA_TNIL) {
    lua_Integer v = check_int(L, "msg.", a->name, a->lo, a->hi);
    switch (a->put) {
    case PUT_U32: stun_put_u32(w, a->type, (uint32_t)v); break;
    case PUT_U64: stun_put_u64(w, a->type, (uint64_t)v); break;
    case PUT_RESPONSE_PORT: stun_put_response_port(w, (uint16_t)v); break;
    case PUT_PADDING: stun_put_padding(w, (size_t)v); break;
    case PUT_TRANSPORT: stun_put_requested_transport(w, (uint8_t)v); break;
    case PUT_CHANNEL: stun_put_channel_number(w, (uint16_t)v); break;
    case PUT_FLAG: break;
    }
  }
  lua_pop(L, 1);
}

struct header {
  uint16_t method, cls;
  uint8_t tid[STUN_CLASSIC_TID_SIZE];
  size_t tid_len;
};

static void read_header(lua_State *L, struct header *h) {
  switch (field(L, 1, "method")) {
  case LUA_TNIL: h->method = STUN_METHOD_BINDING; break;
  case LUA_TSTRING: {
    size_t i = 0;
    while (i < N_METHODS && strcmp(lua_tostring(L, -1), methods[i].name) != 0) i++;
    if (i == N_METHODS)
      luaL_error(L,
                 "msg.method: unknown method '%s' (use \"binding\", \"allocate\", "
                 "\"refresh\", \"send\", \"data\", \"create_permission\", "
                 "\"channel_bind\" or a number)",
                 lua_tostring(L, -1));
    h->method = methods[i].method;
    break;
  }
  default: h->method = (uint16_t)check_int(L, "msg.", "method", 0, STUN_METHOD_MAX);
  }
  lua_pop(L, 1);

  static const char *const classes[] = {"request", "indication", "success", "error", NULL};
  static const uint16_t class_bits[] = {STUN_CLASS_REQUEST, STUN_CLASS_INDICATION,
                                        STUN_CLASS_SUCCESS, STUN_CLASS_ERROR};
  if (field(L, 1, "class") == LUA_TNIL) {
    h->cls = STUN_CLASS_REQUEST;
  } else {
    const char *c = lua_tostring(L, -1);
    int i = 0;
    while (classes[i] != NULL && (c == NULL || strcmp(c, classes[i]) != 0)) i++;
    if (classes[i] == NULL || lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "msg.class: \"request\", \"indication\", \"success\" or \"error\" expected");
    h->cls = class_bits[i];
  }
  lua_pop(L, 1);

  int classic = flag_field(L, "classic");
  if (field(L, 1, "transaction_id") == LUA_TNIL) {
    h->tid_len = classic ? STUN_CLASSIC_TID_SIZE : STUN_TID_SIZE;
    /* the codec takes its transaction id from the caller (it makes no
     * system call): a fresh one from the OS here */
    int rc = uv_random(NULL, NULL, h->tid, h->tid_len, 0, NULL);
    if (rc < 0) luaL_error(L, "stun.encode: no randomness available (%s)", uv_strerror(rc));
    /* a classic id must not start with the cookie, or it is not classic */
    if (classic && h->tid[0] == 0x21) h->tid[0] = 0x20;
  } else {
    size_t n;
    const char *tid = str_field(L, "transaction_id", &n);
    if (n != STUN_TID_SIZE && n != STUN_CLASSIC_TID_SIZE)
      luaL_error(L, "msg.transaction_id: 12 bytes (16 for classic) expected, got %d", (int)n);
    if (classic && n != STUN_CLASSIC_TID_SIZE)
      luaL_error(L, "msg.transaction_id: a classic message needs 16 bytes");
    memcpy(h->tid, tid, n);
    h->tid_len = n;
  }
  lua_pop(L, 1);
}

static int build(lua_State *L, const struct header *h, const char *key, size_t keylen, uint8_t *buf,
                 size_t cap) {
  struct stun_writer w;
  stun_writer_init(&w, buf, cap, h->method, h->cls, h->tid, h->tid_len);
  for (size_t i = 0; i < N_ATTRS(addr_attrs); i++)
    put_addr_field(L, &w, addr_attrs[i].name, addr_attrs[i].type);
  /* the second relayed address of a dual allocation (RFC 8656 §7.3) */
  put_addr_field(L, &w, "xor_relayed_address2", STUN_ATTR_XOR_RELAYED_ADDRESS);
  for (size_t i = 0; i < N_ATTRS(bytes_attrs); i++)
    put_string_field(L, &w, bytes_attrs[i].name, bytes_attrs[i].type);
  put_error_field(L, &w);
  put_unknown_field(L, &w);
  put_change_field(L, &w);
  for (size_t i = 0; i < N_ATTRS(int_attrs); i++) put_int_field(L, &w, &int_attrs[i]);
  put_family_field(L, &w, "requested_address_family", STUN_ATTR_REQUESTED_ADDRESS_FAMILY);
  put_family_field(L, &w, "additional_address_family", STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY);
  put_address_error_field(L, &w);
  put_string_field(L, &w, software_attr.name, software_attr.type);
  /* RFC 8489 §14.5-14.7: MESSAGE-INTEGRITY, then -SHA256, then
   * FINGERPRINT, last */
  if (flag_field(L, "integrity")) stun_put_integrity(&w, key, keylen);
  if (flag_field(L, "integrity_sha256")) stun_put_integrity_sha256(&w, key, keylen);
  if (flag_field(L, "fingerprint")) stun_put_fingerprint(&w);
  return stun_writer_finish(&w);
}

static int stun_encode(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t keylen = 0;
  const char *key = luaL_optlstring(L, 2, NULL, &keylen);
  if (key == NULL && (flag_field(L, "integrity") || flag_field(L, "integrity_sha256")))
    return luaL_argerror(L, 2, "key expected: msg asks for integrity");
  lua_settop(L, 2);

  struct header h;
  read_header(L, &h);
  uint8_t small[SMALL_MSG];
  int n = build(L, &h, key, keylen, small, sizeof small);
  if (n == STUN_ENOSPACE) {
    /* rare: a message above one MTU; build again in a full-size buffer */
    uint8_t *big = lua_newuserdatauv(L, MSG_MAX, 0);
    n = build(L, &h, key, keylen, big, MSG_MAX);
    if (n > 0) {
      lua_pushlstring(L, (const char *)big, (size_t)n);
      return 1;
    }
  }
  if (n < 0) return luaL_error(L, "stun.encode: %s (%s)", stun_strerror(n), stun_errname(n));
  lua_pushlstring(L, (const char *)small, (size_t)n);
  return 1;
}

/* ------------------------------------------------------------ the others */

static void opt_sockaddr(lua_State *L, const char *name, struct sockaddr_storage *ss,
                         const struct sockaddr **out) {
  if (lua_getfield(L, 5, name) != LUA_TNIL) {
    struct stun_addr a;
    socklen_t sl;
    const char *what = lua_pushfstring(L, "opts.%s", name);
    check_addr(L, -2, what, &a);
    lua_pop(L, 1);
    stun_addr_to_sockaddr(&a, ss, &sl);
    *out = (const struct sockaddr *)ss;
  }
  lua_pop(L, 1);
}

static int stun_answer(lua_State *L) {
  size_t len;
  const uint8_t *req = (const uint8_t *)luaL_checklstring(L, 1, &len);
  const char *ip = luaL_checkstring(L, 2);
  lua_Integer port = luaL_checkinteger(L, 3);
  struct stun_answer_opts opts = {.software = luaL_optstring(L, 4, NULL)};
  size_t cap = STUN_ANSWER_MAX;
  struct sockaddr_storage from, origin, other;
  struct stun_addr a;
  socklen_t sl;

  luaL_argcheck(L, port >= 0 && port <= 65535, 3, "port out of range 0..65535");
  if (stun_addr_parse(ip, (uint16_t)port, &a) < 0)
    return luaL_argerror(L, 2, lua_pushfstring(L, "invalid IP address '%s'", ip));
  stun_addr_to_sockaddr(&a, &from, &sl);
  if (!lua_isnoneornil(L, 5)) {
    luaL_checktype(L, 5, LUA_TTABLE);
    opt_sockaddr(L, "origin", &origin, &opts.origin);
    opt_sockaddr(L, "other", &other, &opts.other);
    lua_getfield(L, 5, "change_ok");
    if (lua_toboolean(L, -1)) opts.flags |= STUN_ANSWER_CHANGE_OK;
    lua_getfield(L, 5, "response_port_ok");
    if (lua_toboolean(L, -1)) opts.flags |= STUN_ANSWER_RESPONSE_PORT_OK;
    /* a smaller cap drops the optional attributes that do not fit */
    lua_getfield(L, 5, "max_size");
    if (!lua_isnil(L, -1)) {
      lua_Integer m = luaL_checkinteger(L, -1);
      luaL_argcheck(L, m >= STUN_HEADER_SIZE, 5, "opts.max_size below the 20-byte header");
      if (m < (lua_Integer)cap) cap = (size_t)m;
    }
    lua_pop(L, 3);
  }

  uint8_t out[STUN_ANSWER_MAX];
  int n = stun_answer_binding_ex(req, len, (const struct sockaddr *)&from, &opts, out, cap);
  if (n < 0) return push_fail(L, n);
  lua_pushlstring(L, (const char *)out, (size_t)n);
  return 1;
}

static int stun_is(lua_State *L) {
  size_t len;
  const uint8_t *p = (const uint8_t *)luaL_checklstring(L, 1, &len);
  lua_pushboolean(L, stun_is_stun(p, len));
  return 1;
}

static int stun_ltkey(lua_State *L) {
  size_t ul, rl, pl;
  const char *u = luaL_checklstring(L, 1, &ul);
  const char *r = luaL_checklstring(L, 2, &rl);
  const char *p = luaL_checklstring(L, 3, &pl);
  uint8_t key[NP_MD5_LEN];
  stun_long_term_key(u, ul, r, rl, p, pl, key);
  lua_pushlstring(L, (const char *)key, sizeof key);
  return 1;
}

/* stun.hmac_sha1(key, data): TURN REST-API passwords (base64 of it over
 * "expiry:user", as coturn's use-auth-secret expects). */
static int stun_hmac_sha1(lua_State *L) {
  size_t kl, dl;
  const char *k = luaL_checklstring(L, 1, &kl);
  const char *d = luaL_checklstring(L, 2, &dl);
  uint8_t out[NP_SHA1_LEN];
  np_hmac_sha1(k, kl, d, dl, out);
  lua_pushlstring(L, (const char *)out, sizeof out);
  return 1;
}

/* stun.channel_data(channel, data) -> a TURN ChannelData message */
static int stun_channel_wrap(lua_State *L) {
  lua_Integer ch = luaL_checkinteger(L, 1);
  size_t dlen;
  const char *data = luaL_checklstring(L, 2, &dlen);
  luaL_argcheck(L, ch >= STUN_CHANNEL_MIN && ch <= STUN_CHANNEL_MAX, 1,
                "channel number out of range 0x4000..0x4FFF");
  luaL_argcheck(L, dlen <= 0xFFFF, 2, "at most 65535 bytes");
  luaL_Buffer b;
  uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, TURN_CHANNEL_HEADER + dlen);
  long n = turn_channel_write(out, TURN_CHANNEL_HEADER + dlen, (uint16_t)ch, (const uint8_t *)data,
                              dlen);
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

/* stun.parse_channel_data(bytes) -> channel, data | nil */
static int stun_channel_parse(lua_State *L) {
  size_t len, dlen;
  const uint8_t *p = (const uint8_t *)luaL_checklstring(L, 1, &len);
  uint16_t ch;
  const uint8_t *data;
  if (turn_channel_parse(p, len, &ch, &data, &dlen) < 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushinteger(L, ch);
  lua_pushlstring(L, (const char *)data, dlen);
  return 2;
}

int np_stun_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"decode", stun_decode},
      {"encode", stun_encode},
      {"answer_binding", stun_answer},
      {"is_stun", stun_is},
      {"long_term_key", stun_ltkey},
      {"channel_data", stun_channel_wrap},
      {"hmac_sha1", stun_hmac_sha1},
      {"parse_channel_data", stun_channel_parse},
      {NULL, NULL},
  };
  luaL_newlib(L, funcs);
  return 1;
}
