/*
 * host_test.c: a C host of libvoicebackend, using nothing but include/voicebackend.h.
 *
 * Runs named test cases against the C ABI with the test providers compiled into the library
 * (cargo feature `test-providers`): STT `test-pitch-stt` ("pitch <hz> hz for <ms> ms"),
 * TTS `test-tone-tts` (a 440 Hz tone, 20 ms per character, at 24 kHz).
 *
 * Prints one line per case and a closing "N passed, N failed" line; exits 0 only when every case
 * passed. `host_test <case>` runs one case. The cases live in one file per area (listed in
 * host_test.h), what they share in host.c. Built and run by tests/c_abi.rs, every .c file of
 * tests/c/host_test in one program (SOURCES: host_test.c, host.c and the case files):
 *
 *   cc -std=c11 -Wall -Wextra -Werror -O1 -I include SOURCES \
 *      -L<dir> -lvoicebackend -Wl,-rpath,<dir> -lopus -lpthread -lm
 *
 * Besides the library, the Opus cases (opus.c) use libopus, to encode the user's packets and
 * decode the agent's, and the espeak-ng program, for a sentence the user says.
 */
#include "host_test.h"

/* ---------------------------------------------------------------------------------------------
 * The runner.
 * ------------------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    void (*run)(void);
} CASES[] = {
    {"full_turn", case_full_turn},
    {"barge_in", case_barge_in},
    {"reply_fail", case_reply_fail},
    {"bad_input", case_bad_input},
    {"input_overrun", case_input_overrun},
    {"processor", case_processor},
    {"on_event", case_on_event},
    {"health", case_health},
    {"access", case_access},
    {"persistence", case_persistence},
    {"opus_turn", case_opus_turn},
    {"opus_bad_input", case_opus_bad_input},
    {"tools", case_tools},
};

int main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    printf("libvoicebackend %s, C ABI %u\n", vb_version(), (unsigned)vb_abi_version());
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        if (argc > 1 && strcmp(argv[1], CASES[i].name) != 0)
            continue;
        printf("case %s\n", CASES[i].name);
        fflush(stdout);
        g_case_failures = 0;
        double start = now_s();
        CASES[i].run();
        bool ok = g_case_failures == 0;
        printf("%s %s (%.1f s)\n", ok ? "PASS" : "FAIL", CASES[i].name, now_s() - start);
        fflush(stdout);
        if (ok)
            passed++;
        else
            failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}
