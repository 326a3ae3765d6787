//===- Plot.cpp - training curves as a PNG --------------------------------===//
//
// A small rasterizer (lines, boxes, a 5x7 bitmap font) and a PNG encoder
// over zlib: enough for readable training curves without a plotting
// dependency.
//
//===----------------------------------------------------------------------===//

#include "Plot.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>

using namespace lq;
using namespace lq::train;

namespace {

struct Rgb {
  uint8_t r, g, b;
};

constexpr Rgb kWhite{255, 255, 255}, kBlack{0, 0, 0}, kGrid{225, 225, 225};
constexpr std::array<Rgb, 6> kPalette = {{{31, 119, 180},
                                          {214, 39, 40},
                                          {44, 160, 44},
                                          {255, 127, 14},
                                          {148, 103, 189},
                                          {140, 86, 75}}};

/// 5x7 glyphs, one byte per row (low 5 bits, leftmost pixel in bit 4).
const std::map<char, std::array<uint8_t, 7>> &font() {
  static const std::map<char, std::array<uint8_t, 7>> glyphs = {
      {'0', {14, 17, 19, 21, 25, 17, 14}}, {'1', {4, 12, 4, 4, 4, 4, 14}},
      {'2', {14, 17, 1, 2, 4, 8, 31}},     {'3', {31, 2, 4, 2, 1, 17, 14}},
      {'4', {2, 6, 10, 18, 31, 2, 2}},     {'5', {31, 16, 30, 1, 1, 17, 14}},
      {'6', {6, 8, 16, 30, 17, 17, 14}},   {'7', {31, 1, 2, 4, 8, 8, 8}},
      {'8', {14, 17, 17, 14, 17, 17, 14}}, {'9', {14, 17, 17, 15, 1, 2, 12}},
      {'.', {0, 0, 0, 0, 0, 12, 12}},      {'-', {0, 0, 0, 31, 0, 0, 0}},
      {'+', {0, 4, 4, 31, 4, 4, 0}},       {'%', {24, 25, 2, 4, 8, 19, 3}},
      {'=', {0, 0, 31, 0, 31, 0, 0}},      {'(', {2, 4, 8, 8, 8, 4, 2}},
      {')', {8, 4, 2, 2, 2, 4, 8}},        {',', {0, 0, 0, 0, 12, 4, 8}},
      {':', {0, 12, 12, 0, 12, 12, 0}},    {'/', {1, 1, 2, 4, 8, 16, 16}},
      {'_', {0, 0, 0, 0, 0, 0, 31}},       {' ', {0, 0, 0, 0, 0, 0, 0}},
      {'a', {0, 0, 14, 1, 15, 17, 15}},    {'b', {16, 16, 22, 25, 17, 17, 30}},
      {'c', {0, 0, 14, 16, 16, 17, 14}},   {'d', {1, 1, 13, 19, 17, 17, 15}},
      {'e', {0, 0, 14, 17, 31, 16, 14}},   {'f', {6, 9, 8, 28, 8, 8, 8}},
      {'g', {0, 15, 17, 17, 15, 1, 14}},   {'h', {16, 16, 22, 25, 17, 17, 17}},
      {'i', {4, 0, 12, 4, 4, 4, 14}},      {'j', {2, 0, 6, 2, 2, 18, 12}},
      {'k', {16, 16, 18, 20, 24, 20, 18}}, {'l', {12, 4, 4, 4, 4, 4, 14}},
      {'m', {0, 0, 26, 21, 21, 17, 17}},   {'n', {0, 0, 22, 25, 17, 17, 17}},
      {'o', {0, 0, 14, 17, 17, 17, 14}},   {'p', {0, 0, 30, 17, 30, 16, 16}},
      {'q', {0, 0, 13, 19, 15, 1, 1}},     {'r', {0, 0, 22, 25, 16, 16, 16}},
      {'s', {0, 0, 14, 16, 14, 1, 30}},    {'t', {8, 8, 28, 8, 8, 9, 6}},
      {'u', {0, 0, 17, 17, 17, 19, 13}},   {'v', {0, 0, 17, 17, 17, 10, 4}},
      {'w', {0, 0, 17, 17, 21, 21, 10}},   {'x', {0, 0, 17, 10, 4, 10, 17}},
      {'y', {0, 0, 17, 17, 15, 1, 14}},    {'z', {0, 0, 31, 2, 4, 8, 31}},
  };
  return glyphs;
}

class Canvas {
public:
  Canvas(int width, int height)
      : width(width), height(height), pixels(size_t(width * height), kWhite) {}

  void set(int x, int y, Rgb c) {
    if (x >= 0 && y >= 0 && x < width && y < height)
      pixels[size_t(y * width + x)] = c;
  }
  void line(double x0, double y0, double x1, double y1, Rgb c, int thick) {
    int steps = int(std::max(std::fabs(x1 - x0), std::fabs(y1 - y0))) + 1;
    for (int i = 0; i <= steps; ++i) {
      double t = double(i) / steps;
      int x = int(std::lround(x0 + t * (x1 - x0)));
      int y = int(std::lround(y0 + t * (y1 - y0)));
      for (int dy = -thick / 2; dy <= thick / 2; ++dy)
        for (int dx = -thick / 2; dx <= thick / 2; ++dx)
          set(x + dx, y + dy, c);
    }
  }
  /// Text at (x, y) (top left), scaled `scale` times; letters the font
  /// lacks are drawn lower-case or as blanks.
  void text(int x, int y, const std::string &s, Rgb c, int scale = 1) {
    for (char ch : s) {
      auto it = font().find(char(std::tolower(uint8_t(ch))));
      if (it != font().end())
        for (int row = 0; row < 7; ++row)
          for (int col = 0; col < 5; ++col)
            if (it->second[size_t(row)] & (16 >> col))
              for (int sy = 0; sy < scale; ++sy)
                for (int sx = 0; sx < scale; ++sx)
                  set(x + col * scale + sx, y + row * scale + sy, c);
      x += 6 * scale;
    }
  }

  std::string png() const;

  const int width, height;

private:
  std::vector<Rgb> pixels;
};

void chunk(std::string &out, const char *type, const std::string &data) {
  auto be32 = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8)
      out.push_back(char((v >> s) & 0xFF));
  };
  be32(uint32_t(data.size()));
  std::string body = std::string(type, 4) + data;
  out += body;
  be32(uint32_t(crc32(0, reinterpret_cast<const Bytef *>(body.data()),
                      uInt(body.size()))));
}

std::string Canvas::png() const {
  std::string raw;
  for (int y = 0; y < height; ++y) {
    raw.push_back(0); // filter: none
    for (int x = 0; x < width; ++x) {
      Rgb p = pixels[size_t(y * width + x)];
      raw.append({char(p.r), char(p.g), char(p.b)});
    }
  }
  uLongf size = compressBound(uLong(raw.size()));
  std::string compressed(size, '\0');
  compress(reinterpret_cast<Bytef *>(compressed.data()), &size,
           reinterpret_cast<const Bytef *>(raw.data()), uLong(raw.size()));
  compressed.resize(size);
  std::string out = "\x89PNG\r\n\x1a\n";
  std::string header;
  for (uint32_t v : {uint32_t(width), uint32_t(height)})
    for (int s = 24; s >= 0; s -= 8)
      header.push_back(char((v >> s) & 0xFF));
  header.append({8, 2, 0, 0, 0}); // 8-bit RGB, no interlace
  chunk(out, "IHDR", header);
  chunk(out, "IDAT", compressed);
  chunk(out, "IEND", "");
  return out;
}

std::string tickLabel(double v) {
  char buf[32];
  const char *format = std::fabs(v) >= 100 ? "%.0f"
                       : std::fabs(v) >= 10 ? "%.1f"
                                            : "%.2f";
  std::snprintf(buf, sizeof(buf), format, v);
  return buf;
}

void drawPanel(Canvas &canvas, const Panel &panel, int left, int top,
               int width, int height) {
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const Series &s : panel.series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i]))
        continue;
      x0 = std::min(x0, s.x[i]);
      x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]);
      y1 = std::max(y1, s.y[i]);
    }
  if (x0 > x1)
    x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 == x0)
    x1 = x0 + 1;
  double pad = (y1 - y0) * 0.05 + 1e-9;
  y0 -= pad;
  y1 += pad;
  int plotLeft = left + 60, plotTop = top + 30;
  int plotWidth = width - 80, plotHeight = height - 80;
  auto px = [&](double x) { return plotLeft + (x - x0) / (x1 - x0) * plotWidth; };
  auto py = [&](double y) {
    return plotTop + plotHeight - (y - y0) / (y1 - y0) * plotHeight;
  };
  for (int t = 0; t <= 4; ++t) {
    double y = y0 + (y1 - y0) * t / 4, x = x0 + (x1 - x0) * t / 4;
    canvas.line(plotLeft, py(y), plotLeft + plotWidth, py(y), kGrid, 1);
    canvas.text(left + 4, int(py(y)) - 3, tickLabel(y), kBlack);
    canvas.text(int(px(x)) - 8, plotTop + plotHeight + 8, tickLabel(x), kBlack);
  }
  canvas.line(plotLeft, plotTop, plotLeft, plotTop + plotHeight, kBlack, 1);
  canvas.line(plotLeft, plotTop + plotHeight, plotLeft + plotWidth,
              plotTop + plotHeight, kBlack, 1);
  canvas.text(plotLeft, top + 6, panel.title, kBlack, 2);
  canvas.text(plotLeft + plotWidth / 2 - 15, plotTop + plotHeight + 24,
              panel.xLabel, kBlack);
  for (size_t si = 0; si < panel.series.size(); ++si) {
    const Series &s = panel.series[si];
    Rgb color = kPalette[si % kPalette.size()];
    for (size_t i = 1; i < s.x.size(); ++i)
      if (std::isfinite(s.y[i - 1]) && std::isfinite(s.y[i]))
        canvas.line(px(s.x[i - 1]), py(s.y[i - 1]), px(s.x[i]), py(s.y[i]),
                    color, 3);
    int ly = plotTop + 8 + int(si) * 14;
    canvas.line(plotLeft + plotWidth - 120, ly + 3, plotLeft + plotWidth - 100,
                ly + 3, color, 3);
    canvas.text(plotLeft + plotWidth - 94, ly, s.name, kBlack);
  }
}

} // namespace

Result<bool> lq::train::writePlotPng(const std::string &path,
                                     const std::vector<Panel> &panels) {
  constexpr int kPanelWidth = 520, kHeight = 400;
  Canvas canvas(kPanelWidth * int(std::max<size_t>(1, panels.size())), kHeight);
  for (size_t i = 0; i < panels.size(); ++i)
    drawPanel(canvas, panels[i], int(i) * kPanelWidth, 0, kPanelWidth,
              kHeight);
  std::string png = canvas.png();
  std::string tmp = path + ".tmp";
  FILE *f = std::fopen(tmp.c_str(), "wb");
  if (!f)
    return Result<bool>::failure(path + ": cannot write");
  bool ok = std::fwrite(png.data(), 1, png.size(), f) == png.size();
  ok &= std::fclose(f) == 0;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return Result<bool>::failure(path + ": cannot write");
  }
  return true;
}
