/* fuzz_gguf.c - harness for fuzz_gguf.py: for each file named on the
 * command line, parse it as GGUF, load the model and the tokenizer, and
 * tokenize a string; errors are expected, crashes and sanitizer reports
 * are not.  Not built by make (see fuzz_gguf.py for the command). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gguf.h"
#include "model.h"
#include "tokenizer.h"
#include "util.h"
/* parse + load model + tokenizer + tokenize, for each file given */
int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        gguf_file f;
        llm_model *m = NULL;
        llm_tokenizer *t = NULL;
        if (gguf_open(argv[i], &f)) continue;
        if (!llm_model_load(&f, &m) && !llm_tokenizer_load(&f, &t)) {
            int32_t *ids = NULL; size_t n = 0;
            const char *s = "the thing 123 <|endoftext|> héllo";
            if (!llm_tokenize(t, s, strlen(s), 1, &ids, &n)) {
                char buf[64];
                for (size_t j = 0; j < n; j++) llm_token_bytes(t, ids[j], buf, sizeof buf);
            }
            free(ids);
        }
        llm_tokenizer_free(t);
        llm_model_free(m);
        gguf_close(&f);
    }
    return 0;
}
