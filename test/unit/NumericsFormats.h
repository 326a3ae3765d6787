//===- NumericsFormats.h - runtime formats as the numerics core's -*- C++ -*-===//
//
// The tests check the runtime's results against the numerics core, which
// names the code formats its own way.
//
//===----------------------------------------------------------------------===//

#ifndef LQ_TEST_UNIT_NUMERICSFORMATS_H
#define LQ_TEST_UNIT_NUMERICSFORMATS_H

#include "lq/Numerics/Types.h"
#include "lq/Spec/Spec.h"

inline lq::numerics::Format numericsFormat(lq::Format f) {
  switch (f) {
  case lq::Format::SInt4:
    return lq::numerics::Format::Int4Signed;
  case lq::Format::UInt4:
    return lq::numerics::Format::Int4Unsigned;
  case lq::Format::Log4:
    return lq::numerics::Format::Log4;
  }
  return lq::numerics::Format::Log4;
}

#endif // LQ_TEST_UNIT_NUMERICSFORMATS_H
