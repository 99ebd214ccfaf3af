/*
 * yaml_tree.c - libyaml events to a tree of nodes with their marks.
 *
 * The tree is built with an explicit stack of open containers and a hard
 * nesting limit, so neither building nor freeing recurses without bound,
 * whatever the input.
 */
#include "config/yaml_tree.h"

#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "common/xmalloc.h"

/* Far more than any lbd config needs (it nests five deep). */
#define YTREE_MAX_DEPTH 64

static struct ynode *node_new(enum ynode_kind kind, yaml_mark_t mark)
{
	struct ynode *n = xcalloc(1, sizeof(*n));

	n->kind = kind;
	/* libyaml marks are 0-based; people count from 1. */
	n->line = (int)mark.line + 1;
	n->col = (int)mark.column + 1;
	return n;
}

static void node_add(struct ynode *parent, struct ynode *kid)
{
	if (parent->n == parent->cap) {
		parent->cap = parent->cap ? parent->cap * 2 : 8;
		parent->kids = xrealloc(parent->kids, parent->cap * sizeof(*parent->kids));
	}
	parent->kids[parent->n++] = kid;
}

void ytree_free(struct ynode *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->n; i++)
		ytree_free(n->kids[i]);
	free(n->kids);
	free(n->value);
	free(n);
}

static void set_error(struct ytree_error *err, int line, int col, const char *msg)
{
	err->line = line;
	err->col = col;
	err->msg = xstrdup(msg);
}

/* Line and column (1-based) of a byte offset, for reader errors (bad UTF-8). */
static void offset_to_mark(const char *buf, size_t len, size_t off, int *line, int *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off && i < len; i++) {
		if (buf[i] == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}

static void parser_error(const yaml_parser_t *p, const char *buf, size_t len,
			 struct ytree_error *err)
{
	const char *problem = p->problem ? p->problem : "unknown error";
	char msg[512];
	int line, col;

	if (p->error == YAML_READER_ERROR) {
		offset_to_mark(buf, len, p->problem_offset, &line, &col);
		snprintf(msg, sizeof(msg), "YAML syntax error: %s", problem);
	} else if (p->context) {
		line = (int)p->problem_mark.line + 1;
		col = (int)p->problem_mark.column + 1;
		snprintf(msg, sizeof(msg), "YAML syntax error: %s (%s at line %d)", problem,
			 p->context, (int)p->context_mark.line + 1);
	} else {
		line = (int)p->problem_mark.line + 1;
		col = (int)p->problem_mark.column + 1;
		snprintf(msg, sizeof(msg), "YAML syntax error: %s", problem);
	}
	set_error(err, line, col, msg);
}

/* Puts a finished node under the open container on top of the stack, or makes it the root. */
static void attach(struct ynode **stack, size_t depth, struct ynode **root, struct ynode *n)
{
	if (depth)
		node_add(stack[depth - 1], n);
	else if (!*root)
		*root = n;
	else
		ytree_free(n); /* cannot happen: one document, one root */
}

int ytree_parse(const char *buf, size_t len, struct ynode **root, struct ytree_error *err)
{
	struct ynode *stack[YTREE_MAX_DEPTH];
	size_t depth = 0;
	int ndocs = 0, rc = -1;
	yaml_parser_t p;
	yaml_event_t ev;

	*root = NULL;
	err->msg = NULL;
	if (!yaml_parser_initialize(&p)) {
		set_error(err, 0, 0, "cannot initialise the YAML parser");
		return -1;
	}
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	for (;;) {
		struct ynode *n = NULL;
		bool done = false;

		if (!yaml_parser_parse(&p, &ev)) {
			parser_error(&p, buf, len, err);
			goto out;
		}
		switch (ev.type) {
		case YAML_DOCUMENT_START_EVENT:
			if (++ndocs > 1) {
				set_error(
				    err, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
				    "only one YAML document is allowed (found a second '---')");
				yaml_event_delete(&ev);
				goto out;
			}
			break;
		case YAML_SCALAR_EVENT:
			n = node_new(YNODE_SCALAR, ev.start_mark);
			if (memchr(ev.data.scalar.value, '\0', ev.data.scalar.length)) {
				n->kind = YNODE_BAD;
				n->value = xstrdup("value contains a NUL character");
			} else {
				n->value = xstrndup((const char *)ev.data.scalar.value,
						    ev.data.scalar.length);
				n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
			}
			attach(stack, depth, root, n);
			break;
		case YAML_ALIAS_EVENT:
			n = node_new(YNODE_BAD, ev.start_mark);
			n->value =
			    xstrdup("YAML aliases (*name) are not supported; write the value out");
			attach(stack, depth, root, n);
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			if (depth == YTREE_MAX_DEPTH) {
				set_error(err, (int)ev.start_mark.line + 1,
					  (int)ev.start_mark.column + 1, "nesting is too deep");
				yaml_event_delete(&ev);
				goto out;
			}
			n = node_new(ev.type == YAML_SEQUENCE_START_EVENT ? YNODE_SEQ : YNODE_MAP,
				     ev.start_mark);
			attach(stack, depth, root, n);
			stack[depth++] = n;
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			if (depth)
				depth--;
			break;
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
		if (done)
			break;
	}
	rc = 0;
out:
	yaml_parser_delete(&p);
	if (rc != 0) {
		ytree_free(*root);
		*root = NULL;
	}
	return rc;
}

bool ynode_is_null(const struct ynode *n)
{
	if (!n || n->kind != YNODE_SCALAR || !n->plain)
		return false;
	return n->value[0] == '\0' || strcmp(n->value, "~") == 0 ||
	       strcasecmp(n->value, "null") == 0;
}

const struct ynode *ynode_get(const struct ynode *map, const char *key)
{
	if (!map || map->kind != YNODE_MAP)
		return NULL;
	for (size_t i = 0; i + 1 < map->n; i += 2) {
		const struct ynode *k = map->kids[i];
		if (k->kind == YNODE_SCALAR && strcmp(k->value, key) == 0)
			return map->kids[i + 1];
	}
	return NULL;
}

const char *ynode_kind_name(const struct ynode *n)
{
	if (!n || ynode_is_null(n))
		return "nothing";
	switch (n->kind) {
	case YNODE_SCALAR:
		return "a string";
	case YNODE_SEQ:
		return "a list";
	case YNODE_MAP:
		return "a mapping";
	default:
		return "an invalid value";
	}
}
