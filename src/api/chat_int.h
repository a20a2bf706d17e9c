/*
 * chat_int.h — private to chat*.c: what the chat's files share (chat.c folds the events into
 * messages; chat_attach.c adds attachments to them).
 */
#ifndef AH_API_CHAT_INT_H
#define AH_API_CHAT_INT_H

#include "../store/store.h"
#include "routes.h"

/* The seq of a message id "msg-<seq>", 0 when id is not one. */
int64_t chat_msg_seq(const char *id);
/* The message with this id in msgs (borrowed), NULL when none; *ret_i its index. */
json_t *chat_find(json_t *msgs, const char *id, size_t *ret_i);
/* The {messageId} message of the {id} session (borrowed from *ret_msgs, the whole chat, which the
 * caller frees); *ret_row (when not NULL) the session, caller frees. NULL after answering. */
json_t *chat_load_message(struct api_ctx *ctx, struct http_request *req,
                          struct http_response *res, const char **ret_tenant, json_t **ret_msgs,
                          struct session_row **ret_row);
/* Records ev (a chat_message) and sends text to the agent when not NULL (exec_chat); answers the
 * failure and returns it, or 0. */
int chat_send(struct api_ctx *ctx, struct http_request *req, struct http_response *res,
              const char *tenant, const char *id, json_t *ev, const char *text, int64_t *ret_seq);

/* Tokens of a text in the o200k_base vocabulary (D39; tokens.c). Thread-safe; the first call
 * loads the vocabulary. */
int64_t tokens_count(const char *text, size_t len);
/* Tokens of an image (PNG/GIF sizes read from the header; others as 1024×1024). */
int64_t tokens_image(const char *data, size_t len);

/* GET/PUT …/context and GET …/models (chat_context.c). */
int chat_context_register(struct router *r, struct api_ctx *ctx);

/* The attachment routes (chat_attach.c). */
int chat_attach_register(struct router *r, struct api_ctx *ctx);

/* GET …/webhooks: the delivery state of the session's webhooks (webhooks.c). */
int api_webhooks_register(struct router *r, struct api_ctx *ctx);

/* Validates a user message body (content, context_files, tools_enabled, model_override; extra:
 * more members allowed, NULL-terminated or NULL), records it and sends it to the agent. The
 * stored event (caller frees) and *ret_seq its seq, or NULL after answering the failure. */
json_t *chat_post_user(struct api_ctx *ctx, struct http_request *req, struct http_response *res,
                       const json_t *body, const char *const *extra, int64_t *ret_seq);

/* Answers 400 (thread_id) unless `thread` is a thread of the session; 0 when it is. */
int chat_thread_check(struct api_ctx *ctx, struct http_request *req, struct http_response *res,
                      const char *tenant, const char *id, const char *thread);

/* chat_send with `model`, the model of the agent's next turns, sent along with text (or alone
 * without it) to an agent that runs a turn per message (exec_chat). */
int chat_send_model(struct api_ctx *ctx, struct http_request *req, struct http_response *res,
                    const char *tenant, const char *id, json_t *ev, const char *text,
                    const char *model, int64_t *ret_seq);

/* A message's model_override (chat_context.c). 1 when the agent switches to it for its next
 * turn (claude-code, codex: it must be one of GET …/models, else AH_E_INVAL with p set); 0 when
 * it is only recorded (the scripted agent, which has no model to switch; or the model the
 * session already runs); AH_E_UNSUPPORTED (422) with p set for an agent whose CLI takes its
 * model once, when it starts. */
int chat_model_check(struct api_ctx *ctx, struct session_row *row, const char *model,
                     struct ah_problem *p);
/* Records that the session's model is now `model` (a `context` event, as PUT …/context does),
 * when it is not already; best effort: the message that carried it is sent. */
void chat_model_record(struct api_ctx *ctx, const char *tenant, struct session_row *row,
                       const char *model);

/* POST …/chat/stream (chat_stream.c). */
int chat_stream_register(struct router *r, struct api_ctx *ctx);

#endif
