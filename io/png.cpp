#include "io/png.h"

#include <cstring>

#include <itkImage.h>
#include <itkImageFileWriter.h>
#include <itkPNGImageIO.h>
#include <itkRGBPixel.h>

#include "io/atomic_output.h"
#include "io/error.h"

namespace neuroseg::io {

void write_png_rgb(const uint8_t* rgb, int width, int height, const std::string& path) {
  using Pixel = itk::RGBPixel<unsigned char>;
  using Image = itk::Image<Pixel, 2>;
  auto image = Image::New();
  Image::RegionType region;
  Image::SizeType size;
  size[0] = static_cast<itk::SizeValueType>(width);
  size[1] = static_cast<itk::SizeValueType>(height);
  region.SetSize(size);
  image->SetRegions(region);
  image->Allocate();
  std::memcpy(image->GetBufferPointer(), rgb, static_cast<std::size_t>(width) * height * 3);
  AtomicOutput out(path);
  try {
    auto writer = itk::ImageFileWriter<Image>::New();
    writer->SetInput(image);
    writer->SetImageIO(itk::PNGImageIO::New());
    writer->SetFileName(out.path());
    writer->Update();
  } catch (const itk::ExceptionObject& e) {
    throw Error(path, std::string("cannot write PNG (") + e.GetDescription() + ")");
  }
  out.commit();
}

}  // namespace neuroseg::io
