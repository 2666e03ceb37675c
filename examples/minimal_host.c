/* A minimal C host: one session, mono 16 kHz PCM from stdin at real-time pace, events printed.
 *
 *   cc -std=c11 -Iinclude examples/minimal_host.c -Ltarget/release -lvoicebackend -o minimal_host
 *   sox speech.wav -t raw -r 16000 -c 1 -b 16 -e signed - | ./minimal_host
 *
 * argv[1] may replace the backend configuration (JSON). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "voicebackend.h"

static VbStatus on_transcript(void *user_data, VbSession *session, const char *transcript, VbReply *reply) {
  (void)user_data; (void)session;
  vb_reply_write(reply, "You said: ");
  vb_reply_write(reply, transcript);
  return vb_reply_end(reply);
}

static void print_events(VbSession *session) {
  VbEvent event; bool has_event = false;
  while (vb_session_poll_event(session, &event, &has_event) == VB_OK && has_event) {
    if (event.kind == VB_EVENT_TRANSCRIPT_FINAL) printf("user:  %s\n", event.text);
    if (event.kind == VB_EVENT_AGENT_RESPONSE) printf("agent: %s\n", event.text);
    if (event.kind == VB_EVENT_TURN_METRICS)
      printf("voice to voice: %.0f ms\n", event.metrics.first_output_audio_us / 1000.0);
  }
}

int main(int argc, char **argv) {
  const char *config = argc > 1 ? argv[1]
      : "{\"provider\":\"local\",\"stt_provider\":\"whisper\",\"tts_provider\":\"espeak\"}";
  VbBackend *backend = NULL; VbSession *session = NULL;
  VbCallbacks callbacks = { .user_data = NULL, .on_transcript = on_transcript, .on_event = NULL };
  if (vb_backend_create(config, &backend) != VB_OK || vb_backend_start(backend) != VB_OK ||
      vb_session_create(backend, "{\"input_sample_rate\":16000}", &callbacks, &session) != VB_OK ||
      vb_session_start(session) != VB_OK) {
    fprintf(stderr, "error: %s\n", vb_last_error_message());
    return 1;
  }
  int16_t frame[320], reply[320]; size_t n, written;
  struct timespec tick = { 0, 20 * 1000 * 1000 };
  int tail = 150; /* keep the clock running 3 s after the input for the last reply */
  while ((n = fread(frame, sizeof frame[0], 320, stdin)) > 0 || tail-- > 0) {
    if (n < 320) memset(frame + n, 0, (320 - n) * sizeof frame[0]);
    vb_session_process_audio(session, frame, 320, NULL);
    vb_session_read_audio(session, reply, 320, &written); /* a host would play this */
    print_events(session);
    nanosleep(&tick, NULL);
  }
  vb_session_free(session);
  vb_backend_free(backend);
  return 0;
}
