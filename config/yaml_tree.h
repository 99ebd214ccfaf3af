/*
 * yaml_tree.h - a YAML document as a small tree of nodes that remember where
 * they start in the file.
 *
 * libyaml hands out a stream of events; the config schema wants to look keys
 * up, walk lists and, after the whole file is read, point back at the line
 * of a value (a duplicate name, a pool that does not exist). So the loader
 * first turns the events into this tree, then config.c walks it.
 *
 * Aliases (*name) are not expanded: they become YNODE_BAD nodes that carry
 * their own error text, so a config cannot blow up into a billion nodes.
 */
#ifndef LBD_YAML_TREE_H
#define LBD_YAML_TREE_H

#include <stdbool.h>
#include <stddef.h>

enum ynode_kind { YNODE_SCALAR, YNODE_SEQ, YNODE_MAP, YNODE_BAD };

struct ynode {
	enum ynode_kind kind;
	int line, col; /* 1-based start of the node */
	char *value;   /* scalar text (NUL-terminated); YNODE_BAD: the error text */
	bool plain;    /* scalar written without quotes */
	/* YNODE_SEQ: items; YNODE_MAP: key, value, key, value, ... */
	struct ynode **kids;
	size_t n, cap;
};

/* A syntax error: where libyaml saw it, and its text. */
struct ytree_error {
	int line, col;
	char *msg;
};

/*
 * Parses one YAML document. Returns 0 and sets *root (NULL for a stream
 * without a document: empty or only comments), or -1 and fills *err (free
 * err->msg). Never exits.
 */
int ytree_parse(const char *buf, size_t len, struct ynode **root, struct ytree_error *err);
void ytree_free(struct ynode *n);

/* A plain "", "~" or "null": a key written with no value. */
bool ynode_is_null(const struct ynode *n);
/* The value of key in map, or NULL if map is not a mapping or has no such key. */
const struct ynode *ynode_get(const struct ynode *map, const char *key);
/* "a string", "a list", "a mapping" for messages. */
const char *ynode_kind_name(const struct ynode *n);

#endif
