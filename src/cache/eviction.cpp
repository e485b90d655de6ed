// Eviction policies of an L1 shard: LRU and S3-FIFO. Both run under the shard lock.
#include <deque>
#include <unordered_map>

#include "strata/cache/l1_cache.h"

namespace strata::cache {
namespace {

// Intrusive doubly linked list over L1Node::prev/next; head = newest.
class NodeList {
public:
    void pushFront(L1Node& n) {
        n.prev = nullptr;
        n.next = head_;
        if (head_) {
            head_->prev = &n;
        } else {
            tail_ = &n;
        }
        head_ = &n;
        bytes_ += n.charge;
    }
    void unlink(L1Node& n) {
        (n.prev ? n.prev->next : head_) = n.next;
        (n.next ? n.next->prev : tail_) = n.prev;
        n.prev = n.next = nullptr;
        bytes_ -= n.charge;
    }
    L1Node* tail() const { return tail_; }
    bool empty() const { return head_ == nullptr; }
    std::uint64_t bytes() const { return bytes_; }

private:
    L1Node* head_ = nullptr;
    L1Node* tail_ = nullptr;
    std::uint64_t bytes_ = 0;
};

class LruPolicy final : public EvictionPolicy {
public:
    void onInsert(L1Node& n) override { list_.pushFront(n); }
    void onHit(L1Node& n) override {
        list_.unlink(n);
        list_.pushFront(n);
    }
    void onRemove(L1Node& n) override { list_.unlink(n); }
    L1Node* victim() override { return list_.tail(); }

private:
    NodeList list_;
};

// S3-FIFO. New objects enter the small queue; on leaving it, an object hit while there moves
// to main, the rest are evicted and remembered (by key hash) in the ghost queue. An insert
// whose hash is in the ghost goes straight to main. Main is a FIFO with reinsertion: an object
// with freq > 0 is moved back to the head with freq - 1. Hits only bump a 2-bit counter.
class S3FifoPolicy final : public EvictionPolicy {
public:
    explicit S3FifoPolicy(std::uint64_t budget) : small_target_(budget / 10) {}

    void onInsert(L1Node& n) override {
        n.freq = 0;
        auto it = ghost_.find(n.key_hash);
        if (it != ghost_.end()) {
            if (--it->second == 0) {
                ghost_.erase(it);
            }
            n.queue = kMain;
            main_.pushFront(n);
        } else {
            n.queue = kSmall;
            small_.pushFront(n);
        }
        ++objects_;
    }
    void onHit(L1Node& n) override {
        if (n.freq < 3) {
            ++n.freq;
        }
    }
    void onRemove(L1Node& n) override {
        (n.queue == kSmall ? small_ : main_).unlink(n);
        --objects_;
    }
    L1Node* victim() override {
        for (;;) {
            if (!small_.empty() && (small_.bytes() >= small_target_ || main_.empty())) {
                L1Node* t = small_.tail();
                if (t->freq > 0) {
                    small_.unlink(*t);
                    t->freq = 0;
                    t->queue = kMain;
                    main_.pushFront(*t);
                    continue;
                }
                remember(t->key_hash);
                return t;
            }
            L1Node* t = main_.tail();
            if (t == nullptr) {
                return nullptr;
            }
            if (t->freq > 0) {
                --t->freq;
                main_.unlink(*t);
                main_.pushFront(*t);
                continue;
            }
            return t;
        }
    }
    void setBudget(std::uint64_t budget) override { small_target_ = budget / 10; }

private:
    static constexpr std::uint8_t kSmall = 1;
    static constexpr std::uint8_t kMain = 2;

    // The ghost holds about as many hashes as the cache holds objects.
    void remember(std::uint64_t hash) {
        ghost_fifo_.push_back(hash);
        ++ghost_[hash];
        while (ghost_fifo_.size() > std::max<std::size_t>(objects_, 16)) {
            auto it = ghost_.find(ghost_fifo_.front());
            if (it != ghost_.end() && --it->second == 0) {
                ghost_.erase(it);
            }
            ghost_fifo_.pop_front();
        }
    }

    std::uint64_t small_target_;
    NodeList small_;
    NodeList main_;
    std::size_t objects_ = 0;
    std::deque<std::uint64_t> ghost_fifo_;
    std::unordered_map<std::uint64_t, std::uint32_t> ghost_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> makeEvictionPolicy(EvictionKind kind, std::uint64_t shard_budget) {
    switch (kind) {
        case EvictionKind::Lru:
            return std::make_unique<LruPolicy>();
        case EvictionKind::S3Fifo:
            return std::make_unique<S3FifoPolicy>(shard_budget);
    }
    return std::make_unique<LruPolicy>();
}

}  // namespace strata::cache
