/*
 * np_readline.c - GNU readline's callback interface for `natpunch shell`,
 * so that line editing and history work while the libuv loop keeps
 * running (the loop polls standard input and calls read_char when it is
 * readable; nothing here blocks):
 *
 *   rl.install(prompt)      show the prompt, start editing a line
 *   rl.read_char()          feed readline what is available: returns the
 *                           finished line (the prompt is then removed and
 *                           the terminal back to normal), false while the
 *                           line is not finished, nil at end of input
 *   rl.remove()             stop editing (terminal back to normal)
 *   rl.print_above(text)    write text above the prompt and the line being
 *                           typed, which are then drawn again unchanged
 *   rl.cancel()             Ctrl-C at the prompt: "^C", a fresh empty line
 *   rl.set_prompt(prompt)
 *   rl.add_history(line), rl.read_history(path), rl.write_history(path, max)
 *
 * readline itself is one per process (its state is global: one terminal);
 * the only state kept here is what its line handler hands back to
 * read_char.  readline's own signal handling is off (rl_catch_signals = 0):
 * the shell takes SIGINT through the loop (core.sigint).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <readline/readline.h>
#include <readline/history.h>
#include <lua.h>
#include <lauxlib.h>

/* What the line handler received: readline calls it from inside
 * rl_callback_read_char, which read_char is running. */
static struct {
  int installed;
  int done;   /* the handler ran */
  char *line; /* NULL at end of input */
} rl_state;

static void on_line(char *line) {
  rl_state.done = 1;
  rl_state.line = line;
  /* no new prompt until the shell asks for the next line */
  rl_callback_handler_remove();
  rl_state.installed = 0;
}

static int l_install(lua_State *L) {
  const char *prompt = luaL_optstring(L, 1, "> ");
  if (rl_state.installed) rl_callback_handler_remove();
  rl_state.done = 0;
  rl_state.line = NULL;
  rl_callback_handler_install(prompt, on_line);
  rl_state.installed = 1;
  return 0;
}

static int l_read_char(lua_State *L) {
  if (!rl_state.installed) return luaL_error(L, "readline: read_char without install");
  rl_callback_read_char();
  if (!rl_state.done) {
    lua_pushboolean(L, 0);
    return 1;
  }
  rl_state.done = 0;
  if (!rl_state.line) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushstring(L, rl_state.line);
  free(rl_state.line);
  rl_state.line = NULL;
  return 1;
}

static int l_remove(lua_State *L) {
  (void)L;
  if (rl_state.installed) {
    rl_callback_handler_remove();
    rl_state.installed = 0;
  }
  return 0;
}

static int l_print_above(lua_State *L) {
  size_t n;
  const char *text = luaL_checklstring(L, 1, &n);
  if (!rl_state.installed) {
    fwrite(text, 1, n, stdout);
    fflush(stdout);
    return 0;
  }
  rl_clear_visible_line();
  fwrite(text, 1, n, rl_outstream ? rl_outstream : stdout);
  fflush(rl_outstream ? rl_outstream : stdout);
  rl_on_new_line();
  rl_forced_update_display();
  return 0;
}

static int l_cancel(lua_State *L) {
  (void)L;
  if (!rl_state.installed) return 0;
  FILE *out = rl_outstream ? rl_outstream : stdout;
  rl_point = rl_end;
  rl_redisplay();
  fputs("^C", out);
  rl_crlf();
  rl_replace_line("", 0);
  rl_point = rl_end = rl_mark = 0;
  rl_on_new_line();
  rl_redisplay();
  return 0;
}

static int l_set_prompt(lua_State *L) {
  const char *prompt = luaL_checkstring(L, 1);
  rl_set_prompt(prompt);
  if (rl_state.installed) rl_forced_update_display();
  return 0;
}

static int l_add_history(lua_State *L) {
  const char *line = luaL_checkstring(L, 1);
  if (*line) add_history(line);
  return 0;
}

static int push_errno(lua_State *L, int rc) {
  if (rc == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, strerror(rc));
  return 2;
}

static int l_read_history(lua_State *L) {
  return push_errno(L, read_history(luaL_checkstring(L, 1)));
}

static int l_write_history(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_Integer max = luaL_optinteger(L, 2, 1000);
  luaL_argcheck(L, max > 0 && max <= 1000000, 2, "1 to 1000000 lines");
  stifle_history((int)max);
  int rc = write_history(path);
  if (rc == 0) rc = history_truncate_file(path, (int)max);
  return push_errno(L, rc);
}

static const luaL_Reg funcs[] = {{"install", l_install},
                                 {"read_char", l_read_char},
                                 {"remove", l_remove},
                                 {"print_above", l_print_above},
                                 {"cancel", l_cancel},
                                 {"set_prompt", l_set_prompt},
                                 {"add_history", l_add_history},
                                 {"read_history", l_read_history},
                                 {"write_history", l_write_history},
                                 {NULL, NULL}};

/* exported even when built with -fvisibility=hidden (as the rock is) */
__attribute__((visibility("default"))) int luaopen_natpunch_readline(lua_State *L) {
  rl_readline_name = "natpunch"; /* $if natpunch in ~/.inputrc */
  rl_catch_signals = 0;
  rl_catch_sigwinch = 0;
  using_history();
  luaL_newlib(L, funcs);
  lua_pushstring(L, rl_library_version ? rl_library_version : "?");
  lua_setfield(L, -2, "version");
  return 1;
}
