//! trie (in progress)
