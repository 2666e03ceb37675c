/* A C host running a LiveKit agent worker: the process the worker tests start two or three of.
 *
 *   livekit_worker BACKEND_JSON [refuse | busy]
 *
 * Registers (vb_backend_start), takes every session the server dispatches (vb_backend_set_incoming)
 * with an echo agent ("you said ..."), frees each once it has stopped, and on SIGTERM drains
 * (vb_backend_stop with 60 s: running jobs finish, no new ones) and exits 0. With `refuse` it
 * refuses every session instead. One line on stdout per fact the tests read:
 *   registered
 *   job <room> <session id>        a session taken and started
 *   refused <room>                 a session refused
 *   context <room> <n>             the agent is called with n earlier turns in the history
 *                                  (a conversation another worker began counts its turns)
 *   turn <room> <transcript>       a user turn answered
 *   ended <room>                   a session stopped and freed
 *   drained                        vb_backend_stop returned
 * Errors, and the library's log records at info and above, go to stderr; exit status 1 when the backend cannot start (the message printed). */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>

#include "voicebackend.h"

#define MAX_JOBS 64

struct job {
  VbSession *session;
  char room[160];
};

static struct job jobs[MAX_JOBS];
static pthread_mutex_t jobs_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile sig_atomic_t stop_requested = 0;
static int refuse = 0;

/* Burns CPU until the process ends (the `busy` mode). */
static void *burn(void *arg) {
  (void)arg;
  volatile unsigned long x = 0;
  for (;;) x = x * 31 + 7;
  return NULL;
}

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

/* Prints a line whole, even from several threads. */
static void say(const char *fmt, const char *a, const char *b) {
  static pthread_mutex_t out = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&out);
  printf(fmt, a, b);
  fflush(stdout);
  pthread_mutex_unlock(&out);
}

/* The value of "key" in a flat JSON object of strings (enough for info_json). */
static void json_string(const char *json, const char *key, char *out, size_t capacity) {
  char pattern[64];
  snprintf(pattern, sizeof pattern, "\"%s\":\"", key);
  const char *at = strstr(json, pattern);
  out[0] = '\0';
  if (!at) return;
  at += strlen(pattern);
  size_t n = 0;
  while (at[n] && at[n] != '"' && n + 1 < capacity) {
    out[n] = at[n];
    n++;
  }
  out[n] = '\0';
}

/* How many finished turns the session's history holds (its JSON array's "transcript" keys). */
static int earlier_turns(VbSession *session) {
  static _Thread_local char history[65536];
  size_t needed = 0;
  if (vb_session_history(session, history, sizeof history, &needed) != VB_OK) return -1;
  int turns = 0;
  for (const char *at = history; (at = strstr(at, "\"transcript\"")) != NULL; at++) turns++;
  return turns;
}

static VbStatus echo(void *user_data, VbSession *session, const char *transcript,
                     VbReply *reply) {
  char count[16];
  snprintf(count, sizeof count, "%d", earlier_turns(session));
  say("context %s %s\n", (const char *)user_data, count);
  say("turn %s %s\n", (const char *)user_data, transcript);
  VbStatus status = vb_reply_write(reply, "you said ");
  if (status == VB_OK) status = vb_reply_write(reply, transcript);
  if (status == VB_OK) status = vb_reply_end(reply);
  return status;
}

static VbStatus on_session(void *user_data, VbSession *session, const char *info_json,
                           VbCallbacks *callbacks) {
  (void)user_data;
  char room[160];
  json_string(info_json, "room", room, sizeof room);
  if (refuse) {
    say("refused %s%s\n", room, "");
    return VB_ERR_UNAUTHORIZED;
  }
  pthread_mutex_lock(&jobs_lock);
  int slot = -1;
  for (int i = 0; i < MAX_JOBS; i++) {
    if (!jobs[i].session) {
      slot = i;
      break;
    }
  }
  if (slot < 0) {
    pthread_mutex_unlock(&jobs_lock);
    return VB_ERR_SESSION_LIMIT;
  }
  jobs[slot].session = session;
  snprintf(jobs[slot].room, sizeof jobs[slot].room, "%s", room);
  callbacks->user_data = jobs[slot].room;
  callbacks->on_transcript = echo;
  char id[128] = "";
  size_t needed = 0;
  vb_session_id(session, id, sizeof id, &needed);
  pthread_mutex_unlock(&jobs_lock);
  say("job %s %s\n", room, id);
  return VB_OK;
}

/* Drains the events and audio copy of every session; frees those that stopped. */
static void tend_sessions(void) {
  static int16_t audio[4800];
  pthread_mutex_lock(&jobs_lock);
  for (int i = 0; i < MAX_JOBS; i++) {
    VbSession *session = jobs[i].session;
    if (!session) continue;
    VbEvent event;
    bool has_event = false;
    while (vb_session_poll_event(session, &event, &has_event) == VB_OK && has_event) {
      if (event.kind == VB_EVENT_ERROR && event.text)
        fprintf(stderr, "session in %s: %s\n", jobs[i].room, event.text);
    }
    size_t written = 0;
    while (vb_session_read_audio(session, audio, 4800, &written) == VB_OK && written > 0) {
    }
    if (vb_session_state(session) == VB_STATE_STOPPED) {
      vb_session_free(session);
      jobs[i].session = NULL;
      say("ended %s%s\n", jobs[i].room, "");
    }
  }
  pthread_mutex_unlock(&jobs_lock);
}

struct drain {
  VbBackend *backend;
  atomic_int done;
};

/* The library's log records, one line each on stderr (the tests show them when a check fails). */
static void log_line(void *user_data, int32_t level, const char *target, const char *message) {
  (void)user_data;
  fprintf(stderr, "log %d %s: %s\n", level, target, message);
}

/* vb_backend_stop with a 60 s drain: jobs under way finish, no new ones come. */
static void *drain_backend(void *arg) {
  struct drain *drain = arg;
  vb_backend_stop(drain->backend, 60000);
  atomic_store(&drain->done, 1);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s BACKEND_JSON [refuse | busy]\n", argv[0]);
    return 2;
  }
  refuse = argc > 2 && strcmp(argv[2], "refuse") == 0;
  if (argc > 2 && strcmp(argv[2], "busy") == 0) {
    for (int i = 0; i < 2; i++) {
      pthread_t burner;
      pthread_create(&burner, NULL, burn, NULL);
      pthread_detach(burner);
    }
  }
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);

  vb_set_log_callback(log_line, NULL, VB_LOG_INFO);
  VbBackend *backend = NULL;
  if (vb_backend_create(argv[1], &backend) != VB_OK) {
    fprintf(stderr, "vb_backend_create: %s\n", vb_last_error_message());
    return 1;
  }
  VbIncoming incoming = {.user_data = NULL, .on_session = on_session};
  if (vb_backend_set_incoming(backend, &incoming) != VB_OK) {
    fprintf(stderr, "vb_backend_set_incoming: %s\n", vb_last_error_message());
    return 1;
  }
  VbStatus started = vb_backend_start(backend);
  if (started != VB_OK) {
    fprintf(stderr, "vb_backend_start: %s: %s\n", vb_status_str(started),
            vb_last_error_message());
    vb_backend_free(backend);
    return 1;
  }
  say("registered%s%s\n", "", "");

  struct timespec tick = {.tv_sec = 0, .tv_nsec = 20 * 1000 * 1000};
  while (!stop_requested) {
    tend_sessions();
    nanosleep(&tick, NULL);
  }
  /* Drain on another thread: sessions keep being tended (and freed) meanwhile. */
  struct drain drain = {.backend = backend};
  atomic_init(&drain.done, 0);
  pthread_t drainer;
  pthread_create(&drainer, NULL, drain_backend, &drain);
  while (!atomic_load(&drain.done)) {
    tend_sessions();
    nanosleep(&tick, NULL);
  }
  pthread_join(drainer, NULL);
  tend_sessions();
  say("drained%s%s\n", "", "");
  vb_backend_free(backend);
  return 0;
}
