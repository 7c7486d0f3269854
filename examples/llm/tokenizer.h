/*
 * tokenizer.h - byte-level BPE (GPT-2 style, "tokenizer.ggml.model" = gpt2)
 * built from a GGUF file's vocabulary and merges.
 *
 * Pre-tokenizers: "smollm" (and the other llama.cpp pre-tokenizers with the
 * same rules): every \p{N} code point on its own, then the GPT-2 split
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * and "gpt2"/"default": the GPT-2 split alone.
 */
#ifndef LLM_TOKENIZER_H
#define LLM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct llm_tokenizer llm_tokenizer;

enum { LLM_TOKEN_NORMAL = 1, LLM_TOKEN_UNKNOWN = 2, LLM_TOKEN_CONTROL = 3,
       LLM_TOKEN_USER_DEFINED = 4, LLM_TOKEN_UNUSED = 5, LLM_TOKEN_BYTE = 6 };

int llm_tokenizer_load(const gguf_file *f, llm_tokenizer **out);
void llm_tokenizer_free(llm_tokenizer *t);

int llm_tokenizer_n_vocab(const llm_tokenizer *t);
int llm_tokenizer_bos(const llm_tokenizer *t); /* -1 if none */
int llm_tokenizer_eos(const llm_tokenizer *t); /* -1 if none */
int llm_tokenizer_add_bos(const llm_tokenizer *t);
/* Id of a token given by its exact vocabulary text, or -1. */
int llm_tokenizer_find(const llm_tokenizer *t, const char *text);
int llm_tokenizer_type(const llm_tokenizer *t, int id);

/* Encode len bytes of UTF-8 text.  With parse_special, control and
 * user-defined tokens written literally in the text (e.g. "<|im_end|>")
 * become those tokens.  *ids is malloc'ed. */
int llm_tokenize(const llm_tokenizer *t, const char *text, size_t len, int parse_special,
                 int32_t **ids, size_t *n);

/* The bytes of one token (control tokens give their text).  Returns the
 * number of bytes written to buf (at most cap), or -1 for a bad id. */
int llm_token_bytes(const llm_tokenizer *t, int id, char *buf, size_t cap);

#endif
