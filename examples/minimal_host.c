/* A minimal C host: mono 16 kHz PCM from stdin at real-time pace, the conversation printed.
 * argv[1] may replace the backend configuration (JSON). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "voicebackend.h"

static VbStatus on_transcript(void *user, VbSession *session, const char *text, VbReply *reply) {
  (void)user; (void)session;
  vb_reply_write(reply, "You said: ");
  vb_reply_write(reply, text);
  return vb_reply_end(reply);
}

int main(int argc, char **argv) {
  const char *config = argc > 1 ? argv[1]
      : "{\"provider\":\"local\",\"stt_provider\":\"whisper\",\"tts_provider\":\"espeak\"}";
  VbBackend *backend = NULL; VbSession *session = NULL; VbEvent e; bool has_event;
  VbCallbacks callbacks = { .user_data = NULL, .on_transcript = on_transcript, .on_event = NULL };
  if (vb_backend_create(config, &backend) || vb_backend_start(backend) ||
      vb_session_create(backend, "{\"input_sample_rate\":16000}", &callbacks, &session) ||
      vb_session_start(session)) return fprintf(stderr, "error: %s\n", vb_last_error_message()), 1;
  int16_t frame[320], reply[320]; size_t n, written; int tail = 150; /* 3 s for the last reply */
  while ((n = fread(frame, sizeof frame[0], 320, stdin)) > 0 || tail-- > 0) {
    memset(frame + n, 0, (320 - n) * sizeof frame[0]);
    vb_session_process_audio(session, frame, 320, NULL);
    vb_session_read_audio(session, reply, 320, &written); /* a host would play this */
    while (vb_session_poll_event(session, &e, &has_event) == VB_OK && has_event) {
      if (e.kind == VB_EVENT_TRANSCRIPT_FINAL) printf("user:  %s\n", e.text);
      if (e.kind == VB_EVENT_AGENT_RESPONSE) printf("agent: %s\n", e.text);
      if (e.kind == VB_EVENT_TURN_METRICS) printf("voice to voice: %.0f ms\n", e.metrics.first_output_audio_us / 1e3);
    }
    nanosleep(&(struct timespec){ 0, 20000000 }, NULL);
  }
  vb_session_free(session);
  vb_backend_free(backend);
  return 0;
}
