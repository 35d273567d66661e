#include "kvflash/kv_type.h"

namespace kvflash {

std::optional<KvType> kv_type_from_name(std::string_view name) {
  for (const KvTraits& t : all_kv_types()) {
    if (t.name == name) return t.type;
  }
  return std::nullopt;
}

}  // namespace kvflash
